"""Retry policy and the retry decision, without I/O.

The pipeline sends an attempt; only when it fails (an error, or a status such as 503) does it
call :func:`decide_retry`, which answers "retry after ``delay`` seconds" or "stop, because
``reason``". The function reads no clock and sleeps nowhere: time comes in as arguments
(``remaining`` from the call's :class:`~svcclient._policies.deadline.Deadline`, ``now_wall`` for
HTTP-date ``Retry-After`` values), so the sync and async transports share it and tests are
exact. A first attempt that succeeds never reaches this module.

Rules, in the order they are applied:

1. ``opt_in=False`` forbids retrying the request at all.
2. At most ``attempts - 1`` retries.
3. Outcomes that retry:

   * ``connect_refused``, ``connect_timeout``, ``dns_failure``: always, even for POST; the
     request never reached a server, so a retry cannot duplicate it.
   * ``read_timeout`` (unless ``retry_read_timeouts=False``), ``reset``, ``protocol_error``
     and statuses in ``retry_statuses``: only if the request is idempotent (its method is in
     ``idempotent_methods``, it carries the idempotency header, or ``opt_in=True``).
   * Nothing else: ``tls_error`` (a retry will fail the same way), ``deadline_exceeded``,
     ``circuit_open`` (the breaker has already spoken) and ``unknown`` (an error we cannot
     classify may be a bug; retrying it hides the bug and triples its cost).

4. A body that cannot be replayed (a one-shot stream) is never resent.
   :meth:`RetryPolicy.may_resend` is rules 1, 3's idempotency and 4 as one test: it
   also says whether a hedge (a speculative second attempt) may be sent.
5. The delay is a full-jitter exponential backoff (tenacity's ``wait_random_exponential``).
   For 429 and 503 a parsable ``Retry-After`` raises it to at least the server's value; if
   that does not fit in the time left, the call stops with the original outcome. The delay
   always fits: a jittered backoff longer than half the time left is cut to half (the
   other half is for the attempt), and no retry is made once the deadline has passed.

Requeues (Finagle's ``RequeueFilter``, :meth:`RetryPolicy.may_requeue`): when an attempt
failed *before anything was sent* (a connection refused, reset while connecting, or a TCP
handshake that timed out), the server cannot have acted on the request, so sending it to
another endpoint is safe for every method and is not a *retry*: it uses none of the
call's attempts and waits no backoff. One dead pod out of three then never fails a call,
whatever the call met on the other pods before. Requeues are bounded three ways, so a dead
service cannot turn into a connect storm: the retry budget (the caller withdraws a token
per requeue), the deadline, and a cap per call of one per endpoint in the set (at least
one). ``retry=False`` turns them off too. TLS and DNS failures are not requeued (another
pod will not fix them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from .._classify import ERROR_TYPES
from .._exceptions import ConfigError
from .._validate import (
    check_count,
    check_flag,
    check_header_name,
    check_seconds,
    check_status_codes,
    check_token,
)
from .retry_after import parse_retry_after

# tenacity (~15 ms of import time) is imported by the first RetryPolicy (``_derive``), so
# ``import svcclient`` does not pay for it; a client pays it once, at construction.
# (Not at the first retry: its RetryCallState reads the clock, and decide_retry must not.)
if TYPE_CHECKING:
    import tenacity

    _Wait = tenacity.wait_random_exponential
    _State = tenacity.RetryCallState
else:  # what typing.get_type_hints (the config loader) finds for the private fields
    _Wait = _State = object
_Derived = tuple[_Wait, tuple[_State, ...], float]

__all__ = [
    "DEFAULT_IDEMPOTENT_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "REQUEUE_ERRORS",
    "RetryDecision",
    "RetryPolicy",
    "decide_retry",
    "requeue_cap",
]

DEFAULT_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
DEFAULT_IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Errors raised before the request reached any server: resending cannot duplicate it.
_NEVER_SENT: Final = frozenset({"connect_refused", "connect_timeout", "dns_failure"})
# Errors after the request may have been (partly) processed: resend only if idempotent.
_MAYBE_SENT: Final = frozenset({"read_timeout", "reset", "protocol_error"})
REQUEUE_ERRORS: Final = frozenset({"connect_refused", "connect_timeout", "reset", "unknown"})
"""Error types that, raised while connecting, mean nothing was sent (requeued elsewhere)."""
# Statuses whose Retry-After we honour (RFC 9110 defines it for 503 and 3xx, RFC 6585 for 429).
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
# More distinct backoff windows than any float ratio cap/base can produce (log2 of
# 1.8e308 / 5e-324 is about 2100): bounds the loop in RetryPolicy.__post_init__.
_MAX_WINDOWS: Final = 2200


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times, after which outcomes and how long to wait between attempts.

    Defaults: 3 attempts (2 retries); backoff with full jitter, the n-th retry waiting a
    random time in ``[0, min(backoff_cap, backoff_base * 2**(n-1))]`` (0.05 s, 0.1 s, ...
    capped at 1 s); retry 429, 502, 503, 504; read timeouts retried for idempotent requests;
    ``Idempotency-Key`` makes a POST/PATCH retryable; ``Retry-After`` honoured.

    ``retry_statuses`` must be explicit integer codes between 400 and 599. Status classes
    such as ``"5xx"`` are rejected on purpose: a class would also retry 500 and 501, which
    are rarely transient. Any iterable is accepted and stored as a frozenset; method names
    are upper-cased. Invalid values raise :class:`~svcclient.ConfigError`.

    >>> policy = RetryPolicy(attempts=5, backoff_base=0.1, backoff_cap=2.0)
    >>> policy.worst_case_delay()  # 0.1 + 0.2 + 0.4 + 0.8
    1.5
    >>> RetryPolicy.disabled().attempts
    1
    """

    attempts: int = 3
    backoff_base: float = 0.05
    backoff_cap: float = 1.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    retry_read_timeouts: bool = True
    idempotent_methods: frozenset[str] = DEFAULT_IDEMPOTENT_METHODS
    idempotency_header: str = "Idempotency-Key"
    respect_retry_after: bool = True
    # Built once per policy: tenacity's jittered wait, and one read-only RetryCallState per
    # distinct backoff window (see __post_init__).
    _wait: _Wait = field(init=False, repr=False, compare=False)
    _states: tuple[_State, ...] = field(init=False, repr=False, compare=False)
    _worst_case: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = check_count("attempts", self.attempts)
        base = check_seconds("backoff_base", self.backoff_base)
        cap = check_seconds("backoff_cap", self.backoff_cap)
        if cap < base:
            raise ConfigError(None, "backoff_cap", cap, f"must be >= backoff_base={base:g}")
        check_flag("retry_read_timeouts", self.retry_read_timeouts)
        check_flag("respect_retry_after", self.respect_retry_after)
        set_ = object.__setattr__  # frozen: normalise in place, once, at construction
        codes = check_status_codes("retry_statuses", self.retry_statuses, low=400, high=599)
        set_(self, "retry_statuses", codes)
        set_(self, "idempotent_methods", _methods(self.idempotent_methods))
        check_header_name("idempotency_header", self.idempotency_header)

        # The derived backoff machinery depends on (attempts, base, cap) only and is
        # read-only, so policies with equal numbers share it: a config file with
        # thousands of services builds it a handful of times, not once per service.
        key = (a, float(base), float(cap))
        derived = _DERIVED.get(key)
        if derived is None:
            derived = _derive(a, base, cap)
            if len(_DERIVED) < 256:
                _DERIVED[key] = derived
        set_(self, "_wait", derived[0])
        set_(self, "_states", derived[1])
        set_(self, "_worst_case", derived[2])

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries (``attempts=1``)."""
        return cls(attempts=1)

    def may_resend(
        self, method: str, has_idempotency_key: bool, opt_in: bool | None, replayable: bool
    ) -> bool:
        """May this request be sent again after it may have reached a server (a retry of
        a 503 or a read timeout, or a hedge)? Its method is idempotent, it carries the
        idempotency header, or the caller opted in; never with ``retry=False`` or a
        one-shot body."""
        if opt_in is False or not replayable:
            return False
        return bool(opt_in) or has_idempotency_key or method.upper() in self.idempotent_methods

    def may_requeue(
        self,
        error_type: str,
        *,
        connecting: bool,
        requeues: int,
        endpoints: int,
        remaining: float,
        opt_in: bool | None,
    ) -> bool:
        """May an attempt that failed with ``error_type`` go to another endpoint without
        using an attempt (see the module docstring)? ``connecting``: it failed while
        connecting (nothing was sent); ``requeues``: how many this call made already;
        ``endpoints``: the endpoint set's size; ``remaining``: seconds left.

        >>> RetryPolicy().may_requeue("connect_refused", connecting=True, requeues=0,
        ...                           endpoints=3, remaining=2.5, opt_in=None)
        True
        """
        if opt_in is False or remaining <= 0 or not connecting:
            return False
        return error_type in REQUEUE_ERRORS and requeues < requeue_cap(endpoints)

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt: ``attempts - 1``."""
        return self.attempts - 1

    def worst_case_delay(self) -> float:
        """Sum of the longest backoff sleeps over ``attempts - 1`` retries, in seconds.

        Checked by the config against the total deadline. A ``Retry-After`` from the
        server can ask for longer; such a retry is only made if it fits in the deadline.
        """
        return self._worst_case

    def backoff(self, retry_number: int) -> float:
        """A random backoff before retry number ``retry_number`` (1-based), in seconds.

        Full jitter: uniform in ``[0, min(backoff_cap, backoff_base * 2**(retry_number-1))]``,
        computed by tenacity's ``wait_random_exponential``.
        """
        states = self._states
        if retry_number >= len(states):
            return float(self._wait(states[-1]))
        return float(self._wait(states[retry_number - 1 if retry_number > 1 else 0]))


_DERIVED: dict[tuple[int, float, float], _Derived] = {}


def requeue_cap(endpoints: int) -> int:
    """Requeues one call may make: one per endpoint in the set (at least one: behind a
    ClusterIP, kube-proxy may pick another pod)."""
    return endpoints if endpoints > 1 else 1


def _derive(a: int, base: float, cap: float) -> _Derived:
    """tenacity's jittered wait, one read-only state per backoff window, worst-case sum."""
    import tenacity

    wait = tenacity.wait_random_exponential(multiplier=base, max=cap)
    # tenacity's wait strategies read only ``attempt_number`` from the RetryCallState.
    # The windows stop growing once base * 2**(n-1) reaches the cap, so one state per
    # retry number up to that point covers every retry. The states are built here and
    # never mutated: backoff() then allocates nothing, reads no clock (the state's
    # constructor does) and is safe to call from any thread. The Retrying they point at
    # mirrors this policy but never runs a loop (the pipeline is the loop).
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(a), wait=wait)
    # The upper bound of each jittered sleep is the jitter-free exponential with the
    # same parameters; both come from tenacity so they cannot drift apart.
    bound = tenacity.wait_exponential(multiplier=base, max=cap)
    states: list[tenacity.RetryCallState] = []
    for n in range(1, _MAX_WINDOWS + 1):
        state = tenacity.RetryCallState(retrying, None, (), {})
        state.attempt_number = n  # the sleep after attempt n precedes retry n
        states.append(state)
        if bound(state) >= cap:
            break
    retries = a - 1
    worst = sum(bound(st) for st in states[:retries])
    if retries > len(states):  # the rest all wait the cap
        worst += bound(states[-1]) * (retries - len(states))
    return wait, tuple(states), worst


def _methods(value: object) -> frozenset[str]:
    if value is DEFAULT_IDEMPOTENT_METHODS:
        return DEFAULT_IDEMPOTENT_METHODS  # upper-case tokens already
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(None, "idempotent_methods", value, "must be a collection of methods")
    out: set[str] = set()
    for method in value:
        out.add(str(check_token("idempotent_methods", method)).upper())
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What :func:`decide_retry` answered.

    ``retry``: whether to send another attempt; ``delay``: seconds to sleep first (0.0 when
    not retrying); ``reason``: a short human explanation for logs, spans and errors, e.g.
    ``"status 503"`` or ``"not idempotent: POST without Idempotency-Key"``.
    """

    retry: bool
    delay: float
    reason: str


def _stop(reason: str) -> RetryDecision:
    return RetryDecision(False, 0.0, reason)


def decide_retry(
    policy: RetryPolicy,
    *,
    method: str,
    has_idempotency_key: bool,
    opt_in: bool | None,
    replayable: bool,
    retry_number: int,
    status: int | None,
    error_type: str | None,
    response_headers: Mapping[str, str] | None,
    remaining: float,
    now_wall: float,
) -> RetryDecision:
    """Decide whether a failed attempt is retried, and after how long.

    * ``retry_number``: 1-based number of the retry that would happen next (1 after the
      first attempt failed).
    * ``status`` / ``error_type``: how the attempt ended; ``error_type`` is from
      ``svcclient._classify.ERROR_TYPES`` and wins when both are given (an error while
      reading the body of a response).
    * ``opt_in``: the caller's per-request choice; True allows retrying a non-idempotent
      request, False forbids retrying at all, None applies the rules.
    * ``replayable``: False when the body is a one-shot stream.
    * ``remaining``: seconds left on the call's deadline; ``now_wall``: ``time.time()``
      for HTTP-date ``Retry-After`` values.

    Pure: no clock, no I/O. The retry budget is consulted by the caller after a "yes".

    >>> decide_retry(RetryPolicy(), method="POST", has_idempotency_key=False, opt_in=None,
    ...              replayable=True, retry_number=1, status=503, error_type=None,
    ...              response_headers=None, remaining=2.0, now_wall=0.0).reason
    'not idempotent: POST without Idempotency-Key'
    """
    if opt_in is False:
        return _stop("retries disabled for this request")
    if retry_number > policy.attempts - 1:
        return _stop("attempts exhausted")

    if error_type is not None:
        outcome = error_type
        if error_type in _NEVER_SENT:
            needs_idempotency = False
        elif error_type in _MAYBE_SENT:
            if error_type == "read_timeout" and not policy.retry_read_timeouts:
                return _stop("read timeouts are not retried")
            needs_idempotency = True
        elif error_type in ERROR_TYPES:
            return _stop(f"{error_type} is not retryable")
        else:
            return _stop(f"unknown error type {error_type!r}")
    elif status is not None:
        outcome = f"status {status}"
        if status not in policy.retry_statuses:
            return _stop(f"status {status} is not retryable")
        needs_idempotency = True
    else:
        return _stop("nothing to retry")

    if needs_idempotency and not policy.may_resend(method, has_idempotency_key, opt_in, True):
        return _stop(f"not idempotent: {method.upper()} without {policy.idempotency_header}")
    if not replayable:
        return _stop("body not replayable")
    if not remaining > 0.0:
        return _stop("deadline exceeded")

    # Full jitter can draw anything up to the cap; rather than give up on an unlucky draw,
    # shrink it so the retry keeps half of the time left to run in.
    delay = policy.backoff(retry_number)
    delay = min(delay, remaining * 0.5)
    if (
        status in _RETRY_AFTER_STATUSES
        and error_type is None
        and policy.respect_retry_after
        and response_headers
    ):
        header = response_headers.get("Retry-After")
        if header is None:
            header = response_headers.get("retry-after")
        server_wait = parse_retry_after(header, now_wall)
        if server_wait is not None:
            if server_wait >= remaining:
                return _stop("deadline too short for Retry-After")
            delay = max(delay, server_wait)
    return RetryDecision(True, delay, outcome)
