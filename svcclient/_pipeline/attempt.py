"""One attempt of a call in flight (see :mod:`svcclient._pipeline.call`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._endpoint import Endpoint
    from .._observability.hooks import AttemptContext, CallInfo

__all__ = ["Attempt"]


class Attempt:
    """One attempt in flight: where it went, when it started, when it must be done.

    The call sets every field when it begins the attempt (``Call.begin_attempt``). ``at``
    (on the call's clock) is the earlier of the per-attempt timeout and the deadline;
    :meth:`remaining` is what the transports cap every socket operation with.

    The observers never see it (they get an :class:`AttemptInfo` built from it): ``call``
    is the call's :class:`CallInfo` when the observers have the call open as the attempt
    begins (None: no observer hears of the attempt), ``state`` the per-attempt dict the
    observers' start value held (None: no observer listened to the start), ``enter`` the
    context they returned for the send (see ``enter_attempt``).
    """

    __slots__ = ("at", "call", "clock", "endpoint", "enter", "number", "started", "state")

    endpoint: Endpoint
    number: int
    started: float
    at: float
    clock: Callable[[], float]
    call: CallInfo | None
    state: dict[str, Any] | None
    enter: AttemptContext | None

    def remaining(self) -> float:
        """Seconds this attempt may still take."""
        return self.at - self.clock()
