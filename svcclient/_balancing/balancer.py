"""Client-side load balancing over a service's discovered endpoints.

Theory of operation
-------------------
``LoadBalancer`` is the one object the pipeline talks to, per service. It does no I/O:

    set_endpoints(eps)                    discovery re-resolved
    ep = pick(affinity_key, avoid)        before each attempt
    on_start(ep) ... on_end(ep, latency, failure)
                                          around each attempt
    ep = start(affinity_key, avoid)       pick and on_start in one (the pipeline's)
    due_health_checks() / mark_health()   the active-check driver

It owns per-endpoint load figures (``EndpointStats``), an ``OutlierDetector`` and one
strategy (``RoundRobin``, ``LeastLoaded`` or ``Affinity``). The strategy chooses from a
precomputed tuple of *eligible* endpoints (not ejected, not failing active checks; all of
them in panic mode, when every endpoint is excluded), which is rebuilt only when the set
or the ejection state changes, so a round-robin pick is O(1).

Ejected endpoints come back lazily: ``pick`` compares the clock with the detector's
earliest expiry (and does not even read the clock while nothing is ejected).

Threading: picks are lock-free for round robin and least loaded (they read immutable
snapshots); counters and the detector are updated under one short lock. ``on_ejection`` is
called after the lock is released, and an exception from it is logged and ignored.

Endpoints removed by ``set_endpoints`` vanish from picking at once; their requests in
flight still end with ``on_end``, which then just drops the figures.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from .._endpoint import Endpoint
from .._exceptions import ConfigError
from .._validate import check_choice, check_header_name, check_seconds, check_token
from .outlier import OutlierDetector, OutlierPolicy, Transition
from .strategies import (
    FAILURE_LATENCY,
    Affinity,
    EndpointStats,
    LeastLoaded,
    RoundRobin,
    Strategy,
)

__all__ = ["BalancingPolicy", "LoadBalancer", "StrategyName"]

logger = logging.getLogger("svcclient")

StrategyName = Literal["round_robin", "least_loaded", "affinity"]
_STRATEGIES: tuple[str, ...] = get_args(StrategyName)
_INF = math.inf


class _Pick(Protocol):
    def __call__(
        self, affinity_key: str | None = None, avoid: Endpoint | None = None
    ) -> Endpoint: ...


@dataclass(frozen=True, slots=True)
class BalancingPolicy:
    """How a service's requests are spread over its endpoints.

    * ``strategy``: ``"least_loaded"`` (default: Finagle's and Linkerd's power of two
      choices over in-flight requests x peak-EWMA latency, which steers around a pod that
      is slow or refusing), ``"round_robin"`` or ``"affinity"`` (the same key goes to the
      same endpoint, see ``affinity_*``).
    * ``affinity_timeout``: seconds a key stays pinned without use (default 3600, like
      Kubernetes' ``sessionAffinityConfig.clientIP.timeoutSeconds``). After that the key
      is re-hashed; the hash ring gives the same endpoint again unless the set has
      changed meanwhile, so the timeout mainly lets keys that were moved (by an ejection
      or a new endpoint) settle on their hash choice.
    * ``affinity_header`` / ``affinity_cookie``: where the pipeline reads the key from
      (see :meth:`affinity_key`); the header wins when both are present. Ignored by the
      other strategies.
    * ``ewma_decay``: seconds over which old latency samples fade (default 10, Finagle's).
    * ``seed``: seeds the balancer's random choices (start offset, P2C draws) for
      reproducible tests; ``None`` uses fresh entropy.

    >>> BalancingPolicy("affinity", affinity_header="X-User-Id").strategy
    'affinity'
    """

    strategy: StrategyName = "least_loaded"
    affinity_timeout: float = 3600.0
    affinity_header: str | None = None
    affinity_cookie: str | None = None
    ewma_decay: float = 10.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, _STRATEGIES)
        check_seconds("affinity_timeout", self.affinity_timeout)
        check_header_name("affinity_header", self.affinity_header, optional=True)
        check_token("affinity_cookie", self.affinity_cookie, optional=True)
        check_seconds("ewma_decay", self.ewma_decay)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ConfigError(None, "seed", self.seed, "must be an integer or None")

    def affinity_key(self, headers: Mapping[str, str]) -> str | None:
        """The affinity key in a request's headers (``httpx.Headers`` or any mapping).

        Reads ``affinity_header`` first, then the ``affinity_cookie`` cookie from the
        ``Cookie`` header. ``None`` when the strategy is not ``"affinity"`` or neither is
        present; the pipeline may also pass its own key (a client IP, a user id).

        >>> p = BalancingPolicy("affinity", affinity_cookie="session")
        >>> p.affinity_key({"cookie": "theme=dark; session=abc123"})
        'abc123'
        """
        if self.strategy != "affinity":
            return None
        get = headers.get
        if self.affinity_header is not None:
            value = get(self.affinity_header)
            if value is None and not hasattr(headers, "multi_items"):
                # A plain dict is case-sensitive; httpx.Headers is not.
                value = get(self.affinity_header.lower())
            if value:
                return value
        if self.affinity_cookie is not None:
            raw = get("cookie") or get("Cookie")
            if raw:
                for part in raw.split(";"):
                    name, sep, value = part.partition("=")
                    if sep and name.strip() == self.affinity_cookie:
                        value = value.strip().strip('"')
                        if value:
                            return value
        return None


def _always(endpoint: Endpoint) -> _Pick:
    """A pick with one answer."""

    def pick(affinity_key: str | None = None, avoid: Endpoint | None = None) -> Endpoint:
        return endpoint

    return pick


def _always_started(endpoint: Endpoint, stats: dict[str, EndpointStats]) -> _Pick:
    """``start`` with one answer: ``on_start(endpoint)`` and return it (one call)."""
    key = endpoint.key

    def start(affinity_key: str | None = None, avoid: Endpoint | None = None) -> Endpoint:
        st = stats.get(key)
        if st is not None:
            st.inflight.append(None)
        return endpoint

    return start


class LoadBalancer:
    """Endpoint choice plus passive (and driven active) health for one service.

    ``clock`` is injected for tests; ``rng`` overrides ``policy.seed``; ``on_ejection``
    is called as ``on_ejection(endpoint, True)`` when an endpoint leaves rotation and
    ``(endpoint, False)`` when it returns.

    >>> lb = LoadBalancer(BalancingPolicy(seed=1), OutlierPolicy())
    >>> lb.set_endpoints([Endpoint("10.0.0.1", 8080), Endpoint("10.0.0.2", 8080)])
    >>> ep = lb.pick()
    >>> lb.on_start(ep)
    >>> lb.on_end(ep, latency=0.012, failure=False)
    """

    __slots__ = (
        "_clock",
        "_decay",
        "_detector",
        "_eligible",
        "_endpoints",
        "_expiry",
        "_lock",
        "_on_ejection",
        "_stats",
        "_strategy",
        "outlier",
        "pick",
        "policy",
        "single",
        "start",
    )

    pick: _Pick
    """Choose the endpoint for the next attempt: ``pick(affinity_key=None, avoid=None)``.

    Ejected endpoints are skipped unless every endpoint is excluded (panic mode: all
    are used). ``affinity_key`` matters only to the affinity strategy. ``avoid`` is
    the endpoint of the previous failed attempt: another eligible endpoint is chosen
    when there is one. Raises ``LookupError`` when the set is empty.

    While no ejection is due to expire this *is* the strategy's ``pick`` (one call on
    the request path, not two), or for least loaded over one endpoint a function
    returning it; otherwise it checks the expiry first.
    """

    start: _Pick
    """``pick`` then ``on_start`` of the endpoint picked, returned: what the pipeline calls
    before each attempt. For least loaded over one endpoint, one function doing both."""

    single: tuple[Endpoint, deque[None]] | None
    """For least loaded over one endpoint (while no ejection is due to expire): that
    endpoint and its in-flight count, so the pipeline may do what :attr:`start` would
    (append to the count, take the endpoint) without the call; else None."""

    def __init__(
        self,
        policy: BalancingPolicy,
        outlier: OutlierPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_ejection: Callable[[Endpoint, bool], None] | None = None,
    ) -> None:
        self.policy = policy
        self.outlier = outlier
        self._clock = clock
        self._decay = policy.ewma_decay
        self._on_ejection = on_ejection
        self._lock = threading.Lock()
        # Keyed by Endpoint.key: a str caches its hash, the frozen dataclass recomputes it.
        self._stats: dict[str, EndpointStats] = {}
        self._endpoints: tuple[Endpoint, ...] = ()
        self._eligible: tuple[Endpoint, ...] = ()
        self._detector = OutlierDetector(outlier)
        self._expiry = _INF
        if rng is None:
            rng = random.Random(policy.seed)
        strategy: Strategy
        if policy.strategy == "least_loaded":
            strategy = LeastLoaded(self._stats, rng, clock, policy.ewma_decay)
        elif policy.strategy == "affinity":
            strategy = Affinity(rng, clock, policy.affinity_timeout)
        else:
            strategy = RoundRobin(rng)
        self._strategy = strategy
        self.pick = strategy.pick
        self.start = self._start
        self.single = None

    # -- the endpoint set ---------------------------------------------------------------

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        """Replace the endpoint set (after DNS re-resolution); duplicates are dropped.

        Survivors keep their load figures and ejection state; removed endpoints are no
        longer picked, and their in-flight requests may still call :meth:`on_end`.
        """
        eps = tuple(dict.fromkeys(endpoints))
        now = self._clock()
        with self._lock:
            stats = self._stats
            keep = {ep.key for ep in eps}
            for key, st in list(stats.items()):
                if key not in keep:
                    st.live = False
                    st.health = None
                    if not st.inflight:
                        del stats[key]
            detector = self._detector
            detector.set_endpoints(eps, now)
            for ep in eps:
                known = stats.get(ep.key)
                if known is None:
                    stats[ep.key] = EndpointStats(detector.health(ep))
                else:
                    known.live = True  # may have been removed and re-added while in flight
                    known.health = detector.health(ep)
            self._endpoints = eps
            events = detector.refresh(now)
            self._rebuild()
        self._notify(events)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint in the current set, in the order given."""
        return self._endpoints

    def healthy(self) -> tuple[Endpoint, ...]:
        """Endpoints in rotation (neither ejected nor failing active checks)."""
        self._maybe_refresh()
        detector = self._detector
        return tuple(ep for ep in self._endpoints if not detector.is_excluded(ep))

    def ejected(self) -> tuple[Endpoint, ...]:
        """Endpoints out of rotation (they are still used in panic mode)."""
        self._maybe_refresh()
        detector = self._detector
        return tuple(ep for ep in self._endpoints if detector.is_excluded(ep))

    @property
    def panic(self) -> bool:
        """True while every endpoint is excluded, so all of them are used anyway."""
        self._maybe_refresh()
        return bool(self._endpoints) and not self.healthy()

    @property
    def eligible(self) -> tuple[Endpoint, ...]:
        """What picks choose from now: the healthy endpoints, or all of them in panic mode."""
        self._maybe_refresh()
        return self._eligible

    def stats(self, ep: Endpoint) -> EndpointStats | None:
        """The live load figures of ``ep`` (for metrics and tests); ``None`` if unknown."""
        return self._stats.get(ep.key)

    def _rebuild(self) -> None:
        """Recompute the eligible snapshot; caller holds the lock."""
        detector = self._detector
        eligible = tuple(ep for ep in self._endpoints if not detector.is_excluded(ep))
        if not eligible:
            eligible = self._endpoints  # panic mode: better some requests than none
        self._eligible = eligible
        self._strategy.rebuild(eligible)
        self._expiry = expiry = detector.next_expiry
        strategy = self._strategy
        pick: _Pick
        start: _Pick = self._start
        single = None
        if expiry != _INF:
            pick = self._pick_refreshing
        elif len(eligible) == 1 and type(strategy) is LeastLoaded:
            # One endpoint (a Service's ClusterIP, a docker-compose name): nothing to
            # choose, and P2C returns it without a draw or a clock read; so does this.
            pick = _always(eligible[0])
            start = _always_started(eligible[0], self._stats)
            st = self._stats.get(eligible[0].key)
            if st is not None:
                single = (eligible[0], st.inflight)
        else:
            pick = strategy.pick
        # One attribute store each: a concurrent pick (or start) sees the old binding or
        # the new one.
        self.pick = pick
        self.start = start
        self.single = single

    def _maybe_refresh(self) -> None:
        if self._expiry != _INF and self._clock() >= self._expiry:
            now = self._clock()
            with self._lock:
                events = self._detector.refresh(now)
                self._rebuild()
            self._notify(events)

    def _notify(self, events: Sequence[Transition]) -> None:
        callback = self._on_ejection
        if callback is None:
            return
        for ep, ejected in events:
            try:
                callback(ep, ejected)
            except Exception:
                logger.warning("on_ejection hook failed for %s", ep, exc_info=True)

    # -- the request path ---------------------------------------------------------------

    def _pick_refreshing(
        self, affinity_key: str | None = None, avoid: Endpoint | None = None
    ) -> Endpoint:
        """``pick`` while an ejection may expire: brings such endpoints back first."""
        self._maybe_refresh()
        return self._strategy.pick(affinity_key, avoid)

    def _start(self, affinity_key: str | None = None, avoid: Endpoint | None = None) -> Endpoint:
        """``start`` in general: ``pick``, then ``on_start`` of its answer."""
        ep = self.pick(affinity_key, avoid)
        self.on_start(ep)
        return ep

    def on_start(self, ep: Endpoint) -> None:
        """An attempt to ``ep`` is being sent (counts it as outstanding)."""
        st = self._stats.get(ep.key)
        if st is not None:
            st.inflight.append(None)

    def on_end(self, ep: Endpoint, latency: float, failure: bool, now: float | None = None) -> None:
        """An attempt to ``ep`` ended after ``latency`` seconds.

        ``failure`` is the pipeline's verdict for outlier detection (connect error or
        5xx). ``now``: the balancer's clock at the end, when the caller just read it.
        Safe to call for endpoints already removed from the set.
        """
        st = self._stats.get(ep.key)
        if st is None:
            return
        # contextlib.suppress would cost a context manager on every request.
        try:  # noqa: SIM105
            st.inflight.pop()
        except IndexError:  # more ends than starts: a caller bug, not worth a crash
            pass
        if now is None:
            now = self._clock()
        # Fold the response time into the peak EWMA (Finagle's PeakEwma), here rather than
        # in a method of EndpointStats: a Python call fewer on every attempt. A sample
        # above the average replaces it at once (quick to punish a slowing pod); a lower
        # one pulls it down with weight ``1 - exp(-elapsed / decay)`` (slow to forgive).
        # Unlocked: two racing samples may lose one; the figure stays a valid average.
        ewma = st.ewma
        if failure and latency < FAILURE_LATENCY:
            # A refused connection fails in microseconds; scored as measured it would make
            # the broken pod the cheapest. Score it as a slow answer instead.
            latency = FAILURE_LATENCY
        if latency >= ewma:
            st.ewma = latency
        elif not failure:  # a failure never lowers the figure
            elapsed = now - st.stamp
            if elapsed > 0.0:
                w = math.exp(-elapsed / self._decay)
                st.ewma = ewma * w + (latency if latency > 0.0 else 0.0) * (1.0 - w)
        st.stamp = now
        health = st.health
        if health is None:  # removed from the set: forget it once the last request ends
            if not st.live and not st.inflight:
                with self._lock:
                    if not st.live and not st.inflight and self._stats.get(ep.key) is st:
                        del self._stats[ep.key]
        elif failure:
            with self._lock:
                events = self._detector.record_failure(ep, now)
                if events:
                    self._rebuild()
            if events:
                self._notify(events)
        elif health.failures or health.probation:
            # The common success needs no lock: nothing to reset.
            with self._lock:
                self._detector.record_success(ep)

    def on_abandon(self, ep: Endpoint, elapsed: float) -> None:
        """An attempt to ``ep`` ended with no outcome: it lost a hedge race or was
        cancelled. That is neither a success nor a failure for outlier detection (a
        loser booked as a success would reset a dead pod's failure streak). ``elapsed``
        is a lower bound of its latency, so it may raise the peak EWMA, never lower it."""
        st = self._stats.get(ep.key)
        if st is None:
            return
        try:  # noqa: SIM105
            st.inflight.pop()
        except IndexError:
            pass
        if elapsed > st.ewma:
            st.ewma = elapsed
            st.stamp = self._clock()
        if st.health is None and not st.live and not st.inflight:
            with self._lock:
                if not st.live and not st.inflight and self._stats.get(ep.key) is st:
                    del self._stats[ep.key]

    # -- active health checks -----------------------------------------------------------

    def due_health_checks(self) -> list[Endpoint]:
        """Endpoints to probe now (each is claimed for ``health_check_interval``).

        Always empty unless ``OutlierPolicy.health_check_path`` is set.
        """
        now = self._clock()
        with self._lock:
            return self._detector.due_health_checks(now)

    def mark_health(self, ep: Endpoint, healthy: bool) -> None:
        """Record an active health check: a failure excludes ``ep``, a pass restores it."""
        now = self._clock()
        with self._lock:
            events = self._detector.mark_health(ep, healthy, now)
            if events:
                self._rebuild()
        self._notify(events)
