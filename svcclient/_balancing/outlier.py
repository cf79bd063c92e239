"""Outlier ejection (Envoy-style passive health) and the active health-check schedule.

Theory of operation
-------------------
Every endpoint has a small record. The owner (``LoadBalancer``) feeds it outcomes and the
current time; the detector answers with *transitions* ``(endpoint, excluded)`` and never
does I/O, sleeps or starts timers.

* **Passive ejection.** ``consecutive_failures`` failures in a row (connect errors or 5xx,
  as the pipeline decides) eject the endpoint for
  ``min(base_ejection_time * times_ejected, max_ejection_time)``. A success resets the
  run of failures. Failures reported while an endpoint is already ejected (panic mode,
  or requests that were in flight) neither extend nor repeat the ejection.
* **Return.** An ejected endpoint returns once its time has passed; this is checked
  lazily by :meth:`OutlierDetector.refresh` (``next_expiry`` tells the caller when it is
  worth calling). A returned endpoint is *on probation*: if its first outcome is a
  failure it is ejected again at once, for the next longer time; its first success ends
  probation.
* **Decay of the multiplier.** ``times_ejected`` is not reset on return. It drops by one
  for every full ``base_ejection_time`` the endpoint spends back in service (Envoy's
  rule), computed when it is next ejected. So a pod that flaps is kept out longer and
  longer (30 s, 60 s, 90 s ... capped at 300 s), while one that failed once last week
  starts again at 30 s. Probation also ends once the multiplier has fully decayed.
* **Cap.** At most ``max_ejection_percent`` of the endpoints are ejected at once; as in
  Envoy, one endpoint may always be ejected when none is (provided there are at least two
  endpoints and the percentage is above zero), so a 10 % cap still ejects one of three
  pods. A failure that is over the cap keeps counting and ejects as soon as room frees.
* **Active checks.** With ``health_check_path`` set, :meth:`due_health_checks` hands out
  endpoints whose check is due (claiming them until the next interval so that two
  callers do not probe the same endpoint). ``mark_health(ep, False)`` excludes the
  endpoint until a passing check; a failing check is direct evidence, so it is not
  limited by the cap. ``mark_health(ep, True)`` also ends a passive ejection early
  (Envoy's ``successful_active_health_check_uneject_host``), with probation.

An endpoint is *excluded* while it is passively ejected or failed its last active check;
transitions are reported only when that combined state flips. If every endpoint is
excluded the balancer uses them all (panic mode); that is the balancer's decision, not
the detector's. ``enabled=False`` turns off ejection and active checks entirely.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .._endpoint import Endpoint
from .._exceptions import ConfigError
from .._validate import check_count, check_flag, check_number, check_seconds

__all__ = ["EndpointHealth", "OutlierDetector", "OutlierPolicy", "Transition"]

Transition = tuple[Endpoint, bool]
"""``(endpoint, excluded)``: True when it left the healthy set, False when it returned."""

_INF = math.inf


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    """When to take an endpoint out of rotation, for how long, and how to check it.

    Defaults follow Envoy: eject after 5 consecutive failures for 30 s times the number
    of ejections (at most 300 s), never more than 50 % of the endpoints at once; no
    active health checks unless ``health_check_path`` is set (then every 10 s).

    >>> policy = OutlierPolicy(consecutive_failures=3, health_check_path="/healthz")
    >>> dataclasses.replace(policy, enabled=False).enabled
    False

    ``enabled=False`` disables passive ejection and active checks.
    """

    consecutive_failures: int = 5
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_percent: float = 50.0
    health_check_path: str | None = None
    health_check_interval: float = 10.0
    enabled: bool = True

    def __post_init__(self) -> None:
        check_count("consecutive_failures", self.consecutive_failures)
        check_seconds("base_ejection_time", self.base_ejection_time)
        check_seconds("max_ejection_time", self.max_ejection_time)
        if self.max_ejection_time < self.base_ejection_time:
            raise ConfigError(
                None,
                "max_ejection_time",
                self.max_ejection_time,
                f"must be >= base_ejection_time ({self.base_ejection_time:g})",
            )
        check_number("max_ejection_percent", self.max_ejection_percent, low=0, high=100)
        path = self.health_check_path
        if path is not None and (
            not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path)
        ):
            raise ConfigError(
                None, "health_check_path", path, "must be a path starting with '/', no spaces"
            )
        check_seconds("health_check_interval", self.health_check_interval)
        check_flag("enabled", self.enabled)


class EndpointHealth:
    """Outlier bookkeeping for one endpoint (owned and mutated by ``OutlierDetector``).

    ``LoadBalancer`` keeps a reference to read ``failures``/``probation`` without a lock
    on the success path: only when one is set does a success need the detector.
    """

    __slots__ = (
        "ejected",
        "ejected_until",
        "endpoint",
        "failures",
        "next_check",
        "probation",
        "returned_at",
        "times_ejected",
        "unhealthy",
    )

    def __init__(self, endpoint: Endpoint, now: float) -> None:
        self.endpoint = endpoint
        self.failures = 0  # current run of consecutive failures
        self.times_ejected = 0  # multiplier, decays while in service
        self.ejected = False  # passively ejected
        self.ejected_until = 0.0
        self.returned_at = now  # start of the current stay in service (for decay)
        self.probation = False  # returned from ejection, no success since
        self.unhealthy = False  # failed the last active health check
        self.next_check = now  # active check due at (new endpoints: right away)


class OutlierDetector:
    """Per-endpoint failure counting, ejection and health-check schedule (no I/O).

    Not thread-safe by itself: the owner serialises calls (``LoadBalancer`` holds its lock).
    Every mutating method takes ``now`` and returns the transitions it caused; the caller
    reports them (outside its lock) and rebuilds its picking table when there are any.

    >>> d = OutlierDetector(OutlierPolicy(consecutive_failures=1))
    >>> a, b = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)
    >>> d.set_endpoints([a, b], now=0.0)
    >>> d.record_failure(a, now=1.0)
    ((Endpoint(host='10.0.0.1', port=80), True),)
    >>> d.refresh(now=31.0)
    ((Endpoint(host='10.0.0.1', port=80), False),)
    """

    __slots__ = ("_ejected_count", "_next_check", "_policy", "_states", "next_expiry")

    def __init__(self, policy: OutlierPolicy) -> None:
        self._policy = policy
        # Keyed by ``Endpoint.key``: str hashes are cached, the dataclass's hash is not.
        self._states: dict[str, EndpointHealth] = {}
        self._ejected_count = 0
        self._next_check = _INF
        self.next_expiry = _INF
        """Earliest time an ejected endpoint is due back (``inf`` when none is ejected)."""

    @property
    def policy(self) -> OutlierPolicy:
        """The policy this detector applies."""
        return self._policy

    # -- membership ---------------------------------------------------------------------

    def set_endpoints(self, endpoints: Iterable[Endpoint], now: float) -> None:
        """Track exactly ``endpoints``; survivors keep their state, removed ones vanish.

        Removed endpoints produce no transition: they are not "returning", they are gone.
        """
        old = self._states
        self._states = {ep.key: old.get(ep.key) or EndpointHealth(ep, now) for ep in endpoints}
        self._recount()

    def _recount(self) -> None:
        states = self._states.values()
        self._ejected_count = sum(1 for s in states if s.ejected)
        self.next_expiry = min((s.ejected_until for s in states if s.ejected), default=_INF)
        self._next_check = min((s.next_check for s in states), default=_INF)

    # -- queries ------------------------------------------------------------------------

    def is_excluded(self, ep: Endpoint) -> bool:
        """True while ``ep`` is ejected or failed its last active check."""
        st = self._states.get(ep.key)
        return st is not None and (st.ejected or st.unhealthy)

    def excluded(self) -> tuple[Endpoint, ...]:
        """Every tracked endpoint that is currently out of rotation."""
        return tuple(st.endpoint for st in self._states.values() if st.ejected or st.unhealthy)

    def health(self, ep: Endpoint) -> EndpointHealth | None:
        """The live record of ``ep`` (``None`` when it is not tracked)."""
        return self._states.get(ep.key)

    def times_ejected(self, ep: Endpoint) -> int:
        """The ejection multiplier as stored (0 for unknown endpoints); for tests and metrics."""
        st = self._states.get(ep.key)
        return st.times_ejected if st is not None else 0

    def ejection_limit(self) -> int:
        """How many endpoints may be passively ejected at once right now."""
        n = len(self._states)
        pct = self._policy.max_ejection_percent
        # Integer arithmetic on the percentage avoids 50 % of 3 endpoints drifting to 1.4999.
        limit = math.floor(n * pct / 100.0 + 1e-9)
        if limit == 0 and n >= 2 and pct > 0:
            limit = 1  # Envoy: one endpoint may always be ejected when none is
        return limit

    # -- outcomes -----------------------------------------------------------------------

    def record_success(self, ep: Endpoint) -> None:
        """A request to ``ep`` succeeded: reset its failure run and end probation."""
        st = self._states.get(ep.key)
        if st is not None and (st.failures or st.probation):
            st.failures = 0
            st.probation = False

    def record_failure(self, ep: Endpoint, now: float) -> tuple[Transition, ...]:
        """A request to ``ep`` failed; returns ``[(ep, True)]`` if that ejected it."""
        st = self._states.get(ep.key)
        policy = self._policy
        if st is None or not policy.enabled or st.ejected:
            return ()
        st.failures += 1
        multiplier = self._decayed(st, now)
        if st.probation and multiplier == 0:
            st.probation = False  # fully decayed: back to the ordinary count
        if not (st.probation or st.failures >= policy.consecutive_failures):
            return ()
        if self._ejected_count >= self.ejection_limit():
            return ()  # over the cap: keep counting, eject when room frees
        was_excluded = st.unhealthy
        st.times_ejected = multiplier + 1
        st.ejected = True
        st.ejected_until = now + min(
            policy.base_ejection_time * st.times_ejected, policy.max_ejection_time
        )
        st.failures = 0
        st.probation = False
        self._ejected_count += 1
        self.next_expiry = min(self.next_expiry, st.ejected_until)
        return () if was_excluded else ((st.endpoint, True),)

    def _decayed(self, st: EndpointHealth, now: float) -> int:
        """``times_ejected`` after one step of decay per full base time in service."""
        if st.times_ejected == 0:
            return 0
        served = max(now - st.returned_at, 0.0)
        return max(st.times_ejected - int(served // self._policy.base_ejection_time), 0)

    def refresh(self, now: float) -> tuple[Transition, ...]:
        """Return every endpoint whose ejection time has passed; cheap when none is due."""
        if now < self.next_expiry:
            return ()
        out: list[Transition] = []
        for st in self._states.values():
            if st.ejected and st.ejected_until <= now:
                self._return(st, st.ejected_until)
                if not st.unhealthy:
                    out.append((st.endpoint, False))
        self._recount()
        return tuple(out)

    def _return(self, st: EndpointHealth, at: float) -> None:
        st.ejected = False
        st.failures = 0
        st.returned_at = at
        st.probation = True

    # -- active health checks -----------------------------------------------------------

    def due_health_checks(self, now: float) -> list[Endpoint]:
        """Endpoints whose active check is due at ``now``; each is claimed for one interval.

        Empty when checks are off (no ``health_check_path`` or ``enabled=False``).
        """
        policy = self._policy
        if policy.health_check_path is None or not policy.enabled or now < self._next_check:
            return []
        due: list[Endpoint] = []
        nxt = _INF
        for st in self._states.values():
            if st.next_check <= now:
                due.append(st.endpoint)
                st.next_check = now + policy.health_check_interval
            nxt = min(nxt, st.next_check)
        self._next_check = nxt
        return due

    def mark_health(self, ep: Endpoint, healthy: bool, now: float) -> tuple[Transition, ...]:
        """Record an active check's verdict; returns the transition it caused, if any.

        A passing check also ends a passive ejection early (with probation); a failing one
        excludes the endpoint until a later check passes.
        """
        st = self._states.get(ep.key)
        if st is None or not self._policy.enabled:
            return ()
        before = st.ejected or st.unhealthy
        if healthy:
            st.unhealthy = False
            if st.ejected:
                self._return(st, now)
                self._recount()
        else:
            st.unhealthy = True
        after = st.ejected or st.unhealthy
        return () if before == after else ((st.endpoint, after),)
