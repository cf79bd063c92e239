"""Helpers shared by the unit tests."""

from __future__ import annotations

from typing import Any

from svcclient import AttemptInfo, CallInfo, Hooks


class Recorder(Hooks):
    """Records every pipeline event as a tuple, for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def on_request_start(self, call: CallInfo) -> None:
        self.events.append(("request_start", call.method, call.route))

    def on_request_end(self, call: CallInfo) -> None:
        self.events.append(("request_end", call.status_code, call.error_type, call.attempts))

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        self.events.append(("attempt_start", attempt.number, str(attempt.endpoint)))

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        self.events.append(("attempt_end", attempt.status_code, attempt.error_type))

    def on_retry(self, call: CallInfo, delay: float, reason: str) -> None:
        self.events.append(("retry", reason))

    def on_retry_budget_exhausted(self, service: str) -> None:
        self.events.append(("budget_exhausted", service))

    def on_breaker_transition(self, service: str, old: str, new: str) -> None:
        self.events.append(("breaker", old, new))

    def on_breaker_reject(self, service: str) -> None:
        self.events.append(("reject", service))

    def on_bulkhead_rejected(self, service: str) -> None:
        self.events.append(("bulkhead", service))

    def on_hedge(self, service: str) -> None:
        self.events.append(("hedge", service))

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]
