"""Requeues (Finagle's ``RequeueFilter``): a connection that never opened costs no attempt.

Theory of operation
-------------------
When an attempt fails *before anything was sent* — the connection was refused, reset
while connecting, or the TCP handshake timed out — the server cannot have acted on the
request, so sending it to another endpoint is safe for every method and is not a
*retry* of the request: it does not consume one of the call's attempts and it does not
wait a backoff. One dead pod out of three then never turns into a failed call, whatever
the call met on the other pods before (503, 503, refused: the requeue goes to a pod that
is up).

Requeues are bounded three ways, so a dead service cannot turn into a connect storm:

* the **retry budget** (the caller withdraws one token per requeue; a refusal falls back
  to the ordinary retry rule, which needs a token too);
* the **deadline** (no requeue once the call's time is spent);
* a **cap** per call: the number of endpoints in the set (at least 1), i.e. enough to
  try every other endpoint once after a full round of attempts.

``retry=False`` in the request's extensions turns requeues off too. This module only
decides; :class:`~svcclient._pipeline.call.Call` books the attempt and withdraws from the
budget.
"""

from __future__ import annotations

import httpx

__all__ = ["REQUEUE_ERRORS", "may_requeue", "requeue_cap"]

REQUEUE_ERRORS = frozenset({"connect_refused", "connect_timeout", "reset", "unknown"})
"""Error types (``svcclient._classify``) that, raised while connecting, mean nothing was
sent; TLS and DNS failures are not requeued (another pod will not fix them)."""


def requeue_cap(endpoints: int) -> int:
    """Requeues one call may make: one per endpoint in the set (at least one)."""
    return endpoints if endpoints > 1 else 1


def may_requeue(
    exc: BaseException,
    error_type: str,
    *,
    requeues: int,
    endpoints: int,
    remaining: float,
    opt_in: bool | None,
) -> bool:
    """True when the failed attempt may be sent again elsewhere without counting.

    ``exc`` must be a connect-phase error (``httpx.ConnectError`` or
    ``httpx.ConnectTimeout``, not a pool timeout) of a requeueable ``error_type``;
    ``requeues`` is how many this call already made, ``endpoints`` the size of the
    endpoint set, ``remaining`` the seconds left on the deadline.

    >>> may_requeue(httpx.ConnectError("refused"), "connect_refused", requeues=0,
    ...             endpoints=3, remaining=2.5, opt_in=None)
    True
    """
    if opt_in is False or remaining <= 0:
        return False
    if not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return False
    if error_type not in REQUEUE_ERRORS:
        return False
    return requeues < requeue_cap(endpoints)
