"""Parsing the ``Retry-After`` response header (RFC 9110 §10.2.3).

The header comes from a server we do not control, so the parser is total: any input gives
a number of seconds or ``None`` ("treat as absent"), never an exception. The wall-clock time
comes in as an argument so the function stays pure and exactly testable.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = ["MAX_RETRY_AFTER", "parse_retry_after"]

MAX_RETRY_AFTER: Final = 86_400.0
"""Longest wait we report (one day). Larger values are clamped: every caller compares the
result with a deadline of seconds, so "a day" and "a year" lead to the same decision, and
a clamp keeps absurd inputs (``10**400``) away from float overflow."""

# Longest value worth looking at: an IMF-fixdate is 29 characters. The bound keeps a hostile
# header from costing more than a few microseconds.
_MAX_LEN: Final = 64

# Patterns are compiled on first use, not at import (each costs import time).
# RFC 9110 says delta-seconds is ``1*DIGIT``. Some servers send a fraction ("1.5"); we accept
# it because the intent is unambiguous. A sign, an exponent, "inf" or "nan" are rejected.
_DELTA: Final = functools.cache(lambda: re.compile(r"[0-9]+(?:\.[0-9]+)?"))


def parse_retry_after(value: str | None, now_wall: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or ``None``.

    Both forms of the header are understood:

    * delta-seconds: ``"120"`` -> ``120.0`` (a decimal fraction such as ``"1.5"`` is accepted);
    * HTTP-date: ``"Wed, 21 Oct 2015 07:28:00 GMT"`` -> seconds from ``now_wall`` (a Unix
      timestamp, i.e. ``time.time()``) until that date; a date in the past gives ``0.0``.

    Anything else (empty, negative, garbage, overlong) gives ``None``, which callers treat
    as "header absent". Results are clamped to :data:`MAX_RETRY_AFTER`. Never raises.

    >>> parse_retry_after("3", now_wall=0.0)
    3.0
    >>> parse_retry_after("soon", now_wall=0.0) is None
    True
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _MAX_LEN:
        return None
    if _DELTA().fullmatch(text):
        # At most 64 characters, so float() cannot overflow beyond inf; min() clamps it.
        return min(float(text), MAX_RETRY_AFTER)
    return _parse_http_date(text, now_wall)


def _parse_http_date(text: str, now_wall: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # "-0000" (or no zone at all) parses as naive; HTTP dates are always GMT.
        when = when.replace(tzinfo=UTC)
    try:
        delay = when.timestamp() - now_wall
    except (OverflowError, ValueError, OSError):
        return None
    if math.isnan(delay):
        return None
    return min(max(delay, 0.0), MAX_RETRY_AFTER)
