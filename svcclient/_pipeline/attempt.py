"""One attempt of a call in flight (see :mod:`svcclient._pipeline.call`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._observability.hooks import AttemptInfo

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._endpoint import Endpoint

__all__ = ["Attempt"]


class Attempt(AttemptInfo):
    """One attempt in flight: where it went, when it started, when it must be done.

    It is also what the observers get (an :class:`AttemptInfo`): one object per attempt,
    not two. ``call`` is None when the transport has no observers (then no hook ever
    sees it). ``at`` (on the call's clock) is the earlier of the per-attempt timeout and
    the deadline; :meth:`remaining` is what the transports cap every socket operation
    with.
    """

    __slots__ = ("at", "clock")

    endpoint: Endpoint  # never None here (only a passthrough's attempt has none)
    at: float
    clock: Callable[[], float]

    def remaining(self) -> float:
        """Seconds this attempt may still take."""
        return self.at - self.clock()
