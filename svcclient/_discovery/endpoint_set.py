"""The endpoint set of one service name: TTL, last good answer and refresh turn-taking.

Theory of operation
-------------------
``EndpointSet`` holds what a host name resolved to and decides *when* to ask again; it
never performs a lookup itself.  The pipeline drives it::

    if eps.needs_refresh(now) and eps.begin_refresh(now):   # one caller wins the turn
        try:
            eps.update(resolver.resolve(eps.host, eps.port), clock())
        except DnsLookupError as exc:
            eps.refresh_failed(exc, clock())
        except BaseException:
            eps.abort_refresh()                              # cancelled: give the turn back
            raise
    if not eps.current:
        raise ... from eps.last_error                         # never resolved successfully

State and transitions (``next_refresh`` is a monotonic time)::

    state            event                         -> next_refresh / effect
    never resolved   (initial)                     -inf: the first caller refreshes
    any              update(res, now)              now + max(res.ttl, min_refresh);
                                                   current := res.endpoints, error cleared,
                                                   version += 1 if the set changed
    any              refresh_failed(err, now)      now + failure_retry; current kept (the
                                                   last good set keeps serving); last_error
    any              update(empty res, now)        treated as refresh_failed (an empty
                                                   answer must not erase a good set)

Only one refresh runs at a time: ``begin_refresh`` hands out the turn under a lock (threads)
and with no ``await`` in between (tasks).  A turn expires after ``refresh_lease`` seconds, so
a refresher that died without reporting back cannot freeze the set forever.

The hot path is ``needs_refresh(now)``: one float comparison.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from .._endpoint import Endpoint
from .._exceptions import ConfigError
from .._validate import check_count, check_seconds
from .dns import DnsLookupError, Resolution

__all__ = ["EndpointSet"]


class EndpointSet:
    """The current endpoints of service ``name`` (``host`` resolved, default ``port``).

    ``min_refresh`` (default 1 s): the shortest time between two successful refreshes,
    whatever the TTL says.  ``failure_retry`` (default 5 s): how long to wait after a
    failed refresh before trying again (the last good set serves meanwhile).
    ``refresh_lease`` (default 30 s): after this long a refresh turn that never reported
    back may be taken by another caller.  ``clock`` is used when a method gets no ``now``.

    >>> eps = EndpointSet("user-service", "user-service.default.svc.cluster.local", 8080)
    >>> eps.needs_refresh(0.0)
    True
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_next_refresh",
        "_refresh_started",
        "_refreshing",
        "current",
        "failure_retry",
        "host",
        "last_error",
        "min_refresh",
        "name",
        "port",
        "refresh_lease",
        "resolved_at",
        "source",
        "ttl",
        "version",
    )

    current: tuple[Endpoint, ...]
    """The last good endpoint set; empty until the first successful refresh."""
    last_error: BaseException | None
    """The error of the last failed refresh; None after a success."""
    version: int
    """Increments each time ``current`` changes (0 = never resolved)."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_refresh: float = 1.0,
        failure_retry: float = 5.0,
        refresh_lease: float = 30.0,
    ) -> None:
        try:
            check_seconds("dns_min_refresh", min_refresh, zero=True)
            check_seconds("dns_failure_retry", failure_retry, zero=True)
            check_seconds("dns_refresh_lease", refresh_lease, zero=True)
            check_count("port", port, low=1, high=65535)
        except ConfigError as exc:
            raise ConfigError(name, exc.key, exc.value, exc.reason) from None
        self.name = name
        self.host = host
        self.port = port
        self.min_refresh = float(min_refresh)
        self.failure_retry = float(failure_retry)
        self.refresh_lease = float(refresh_lease)
        self._clock = clock
        self._lock = threading.Lock()
        self._next_refresh = -math.inf
        self._refreshing = False
        self._refresh_started = -math.inf
        self.current = ()
        self.last_error = None
        self.version = 0
        self.ttl = 0.0
        self.source = ""
        self.resolved_at = -math.inf

    def __repr__(self) -> str:
        eps = ", ".join(e.key for e in self.current)
        return f"<EndpointSet {self.name} {self.host}:{self.port} v{self.version} [{eps}]>"

    @property
    def next_refresh(self) -> float:
        """Clock time after which ``needs_refresh`` returns True."""
        return self._next_refresh

    @property
    def refreshing(self) -> bool:
        """True while a caller holds the refresh turn."""
        return self._refreshing

    def needs_refresh(self, now: float | None = None) -> bool:
        """True when the set was never resolved or its TTL (or failure back-off) ran out."""
        return (self._clock() if now is None else now) >= self._next_refresh

    def begin_refresh(self, now: float | None = None) -> bool:
        """Take the refresh turn; True means *you* must now call ``update``,
        ``refresh_failed`` or ``abort_refresh``.  False when no refresh is due or another
        caller holds an unexpired turn."""
        t = self._clock() if now is None else now
        if t < self._next_refresh:
            return False
        with self._lock:
            if self._refreshing and t - self._refresh_started < self.refresh_lease:
                return False
            self._refreshing = True
            self._refresh_started = t
            return True

    def abort_refresh(self) -> None:
        """Give the turn back without changing anything (e.g. the refresher was cancelled)."""
        self._refreshing = False

    def update(self, resolution: Resolution, now: float | None = None) -> bool:
        """Install a successful resolution; returns True when the endpoint set changed."""
        t = self._clock() if now is None else now
        if not resolution.endpoints:
            self.refresh_failed(
                DnsLookupError(self.host, "empty answer", kind="no_answer", service=self.name), t
            )
            return False
        new = resolution.endpoints
        if len(set(new)) != len(new):
            new = tuple(dict.fromkeys(new))  # hand-built resolutions may repeat an endpoint
        # Compare as sets: servers rotate record order, which is not a change of membership.
        changed = new != self.current and set(new) != set(self.current)
        if changed:
            self.current = new
            self.version += 1
        self.ttl = resolution.ttl
        self.source = resolution.source
        self.resolved_at = t
        self.last_error = None
        self._next_refresh = t + max(resolution.ttl, self.min_refresh)
        self._refreshing = False
        return changed

    def refresh_failed(self, error: BaseException, now: float | None = None) -> None:
        """Record a failed refresh: keep ``current``, remember ``error`` in ``last_error``
        and retry after ``failure_retry`` seconds."""
        t = self._clock() if now is None else now
        self.last_error = error
        self._next_refresh = t + self.failure_retry
        self._refreshing = False
