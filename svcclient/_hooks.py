"""The observer interface every pipeline event goes through.

Prometheus metrics and OpenTelemetry tracing are observers like any user's: subclass
:class:`Hooks`, override what you need, and pass it in ``hooks=[...]``. A hook that
raises is logged and ignored; it never breaks the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from ._endpoint import Endpoint

__all__ = ["AttemptInfo", "CallInfo", "Hooks"]


@dataclass(slots=True, eq=False)
class CallInfo:
    """One logical call (all its attempts). ``state`` is free for observers to use."""

    service: str
    method: str
    route: str
    request: httpx.Request
    started: float
    attempts: int = 0
    status_code: int | None = None
    error_type: str | None = None
    duration: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class AttemptInfo:
    """One attempt of a call, to one endpoint.

    ``number`` is the resend count (0 for the first attempt). ``request`` may be given
    headers by ``on_attempt_start`` (trace context). ``state`` is for observers.
    """

    call: CallInfo
    number: int
    endpoint: Endpoint | None
    request: httpx.Request
    started: float
    status_code: int | None = None
    error_type: str | None = None
    duration: float = 0.0
    state: Any = None


class Hooks:
    """Base observer: every method is a no-op. Override the events you care about."""

    def on_request_start(self, call: CallInfo) -> None:
        """A logical call entered the pipeline."""

    def on_request_end(self, call: CallInfo) -> None:
        """A logical call left the pipeline (``call.status_code`` or ``call.error_type``)."""

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        """An attempt is about to be sent; ``attempt.request`` headers may be edited."""

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        """An attempt finished with a status code or an error type."""

    def on_retry(self, call: CallInfo, delay: float, reason: str) -> None:
        """The pipeline will retry ``call`` after ``delay`` seconds."""

    def on_retry_budget_exhausted(self, service: str) -> None:
        """A retry was denied because the service's retry budget is spent."""

    def on_breaker_transition(self, service: str, old: str, new: str) -> None:
        """A circuit breaker changed state (``closed``/``open``/``half_open``/...)."""

    def on_breaker_reject(self, service: str) -> None:
        """A call was rejected by an open breaker."""

    def on_ejection(self, service: str, endpoint: Endpoint, ejected: bool) -> None:
        """An endpoint was ejected (``ejected=True``) or returned to rotation."""

    def on_bulkhead_rejected(self, service: str) -> None:
        """A call was rejected because the bulkhead was full."""

    def on_hedge(self, service: str) -> None:
        """A hedged (speculative) attempt was sent."""
