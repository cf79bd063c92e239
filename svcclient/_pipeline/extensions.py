"""The request extensions svcclient reads and writes, named once, checked at the door.

httpx carries per-request options in ``request.extensions`` (a plain dict). The keys
svcclient understands:

=================  ==============================================================
``retry``          ``True`` lets a POST/PATCH retry, ``False`` forbids retries
``deadline``       seconds left (finite, >= 0) or a :class:`Deadline` from upstream;
                   can only shorten the service's deadline
``route``          the route template for metrics and spans (``"/users/{id}"``)
``affinity_key``   the session-affinity key (``str`` or ``bytes``)
``svcclient.buffer``  set by ``ServiceClient`` when it wants the whole body: the
                   transport then reads it inside the attempt (a reset mid-body is
                   retried). Without it the response streams, as httpx expects.
=================  ==============================================================

and httpx's own ``timeout`` (per phase: connect, read, write, pool) and
``sni_hostname``. :func:`read` validates the caller's values before the pipeline takes
anything (a bulkhead slot, a breaker admission, a span): a wrong type is a ``TypeError``,
a wrong value a ``ValueError``, and both name the extension.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from .._policies.deadline import Deadline

__all__ = [
    "AFFINITY_KEY",
    "BUFFER",
    "DEADLINE",
    "RETRY",
    "ROUTE",
    "SNI_HOSTNAME",
    "TIMEOUT",
    "TIMEOUT_KEYS",
    "read",
]

RETRY: Final = "retry"
DEADLINE: Final = "deadline"
ROUTE: Final = "route"
AFFINITY_KEY: Final = "affinity_key"
BUFFER: Final = "svcclient.buffer"
TIMEOUT: Final = "timeout"  # httpx's: {"connect": s, "read": s, "write": s, "pool": s}
SNI_HOSTNAME: Final = "sni_hostname"  # httpcore's: the TLS server name
TIMEOUT_KEYS: Final = ("connect", "read", "write", "pool")


def read(
    ext: Mapping[str, Any],
) -> tuple[bool | None, float | Deadline | None, str | None, str | bytes | None]:
    """``(retry, deadline, route, affinity_key)`` from ``ext``, each None when absent.

    Raises ``TypeError`` (wrong type) or ``ValueError`` (a number that is negative, NaN
    or infinite) naming the extension.

    >>> read({"retry": True, "deadline": 1.5})
    (True, 1.5, None, None)
    """
    retry = ext.get(RETRY)
    if retry is not None and retry.__class__ is not bool:
        raise _wrong_type(RETRY, retry, "a bool")
    deadline = ext.get(DEADLINE)
    if deadline is not None and not isinstance(deadline, Deadline):
        if isinstance(deadline, bool) or not isinstance(deadline, int | float):
            raise _wrong_type(DEADLINE, deadline, "a number of seconds or a Deadline")
        if not 0 <= deadline < math.inf:
            raise ValueError(
                f"extension {DEADLINE!r} must be a finite number >= 0, not {deadline!r}"
            )
    route = ext.get(ROUTE)
    if route is not None and route.__class__ is not str and not isinstance(route, str):
        raise _wrong_type(ROUTE, route, "a str")
    affinity = ext.get(AFFINITY_KEY)
    if affinity is not None and not isinstance(affinity, str | bytes):
        raise _wrong_type(AFFINITY_KEY, affinity, "a str or bytes")
    return retry, deadline, route, affinity


def _wrong_type(key: str, value: object, wanted: str) -> TypeError:
    return TypeError(
        f"extension {key!r} must be {wanted}, not {type(value).__name__} ({value!r:.40})"
    )
