"""One total deadline per call, shared by every attempt and every backoff sleep.

A :class:`Deadline` is created for every request, so it is a three-slot object whose
constructor reads the clock once and does nothing else. Everything else is arithmetic on
``at`` (the absolute clock time at which the call must be done).

Propagation: :meth:`Deadline.to_header` renders the time left as whole milliseconds (rounded
down, so a server is never promised more time than the caller has) and
:meth:`Deadline.from_header` reads such a value back. The header name is configuration;
:data:`DEFAULT_DEADLINE_HEADER` is the default.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

from .._exceptions import ConfigError

__all__ = ["DEFAULT_DEADLINE_HEADER", "Deadline"]

DEFAULT_DEADLINE_HEADER: Final = "X-Deadline-Ms"
"""Default header that carries the remaining time, in integer milliseconds."""

# An incoming header longer than this (about 31 years in ms) is not a deadline we honour.
_MAX_HEADER_DIGITS: Final = 12
_new = object.__new__


class Deadline:
    """A point in (monotonic) time by which a call must finish.

    ``Deadline(3.0)`` expires three seconds from now according to ``clock`` (default
    :func:`time.monotonic`). ``start`` pins the starting time instead of reading the clock
    (useful when the caller already read it). ``timeout`` may be ``0`` (already expired,
    e.g. an upstream deadline that ran out) or ``math.inf`` (no deadline).

    >>> d = Deadline(2.0, clock=lambda: 10.0)
    >>> d.at, d.remaining(), d.attempt_timeout(5.0)
    (12.0, 2.0, 2.0)
    """

    __slots__ = ("_clock", "at", "timeout")

    timeout: float
    at: float
    _clock: Callable[[], float]

    def __init__(
        self,
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
    ) -> None:
        # ``not timeout >= 0`` also rejects NaN, which would make every comparison false.
        if not timeout >= 0:
            raise ConfigError(None, "deadline", timeout, "must be >= 0")
        self.timeout = timeout
        self._clock = clock
        self.at = (clock() if start is None else start) + timeout

    @classmethod
    def started(cls, timeout: float, clock: Callable[[], float], start: float) -> Deadline:
        """``Deadline(timeout, clock=clock, start=start)`` for a ``timeout`` already
        validated (a service's configured deadline): built without the keyword call and
        the check, about half the instructions. Made once per request."""
        deadline = _new(cls)
        deadline.timeout = timeout
        deadline._clock = clock
        deadline.at = start + timeout
        return deadline

    def remaining(self) -> float:
        """Seconds left before the deadline; negative once it has passed."""
        return self.at - self._clock()

    def expired(self) -> bool:
        """True once the deadline has been reached."""
        return self._clock() >= self.at

    def elapsed(self) -> float:
        """Seconds since the deadline was started."""
        return self._clock() - (self.at - self.timeout)

    def attempt_timeout(self, per_attempt: float) -> float:
        """Timeout for the next attempt: the smaller of ``per_attempt`` and the time left.

        Never negative: ``0.0`` once the deadline has passed (the pipeline checks
        :meth:`expired` before sending).
        """
        left = self.at - self._clock()
        if per_attempt < left:
            return per_attempt
        return left if left > 0.0 else 0.0

    def earlier(self, other: Deadline | None) -> Deadline:
        """Whichever of ``self`` and ``other`` expires first (``self`` when ``other`` is None).

        Used to honour an incoming deadline: ``own.earlier(Deadline.from_header(v))``.
        """
        if other is None or self.at <= other.at:
            return self
        return other

    def to_header(self) -> str:
        """The time left as whole milliseconds (rounded down, never negative), e.g. ``"2500"``.

        An infinite deadline has no header form; the pipeline should not send one
        (this returns ``""``).
        """
        left = self.at - self._clock()
        if left <= 0.0:
            return "0"
        if math.isinf(left):
            return ""
        return str(int(left * 1000.0))

    @classmethod
    def from_header(
        cls, value: str | None, clock: Callable[[], float] = time.monotonic
    ) -> Deadline | None:
        """Build a deadline from an integer-milliseconds header value; ``None`` if unusable.

        ``"1500"`` -> a deadline 1.5 s from now. Empty, signed, fractional, non-numeric or
        absurdly long values give ``None`` (the header is treated as absent); never raises.

        >>> Deadline.from_header("250", clock=lambda: 0.0).at
        0.25
        >>> Deadline.from_header("-5") is None
        True
        """
        if not isinstance(value, str):
            return None
        text = value.strip()
        # str.isdigit() accepts superscripts and other non-ASCII digits; int() does not.
        if not text or len(text) > _MAX_HEADER_DIGITS or not (text.isascii() and text.isdigit()):
            return None
        return cls(int(text) / 1000.0, clock=clock)

    def __repr__(self) -> str:
        return f"Deadline(timeout={self.timeout!r}, at={self.at!r})"
