"""Per-service runtime state shared by the sync and async transports.

One ``ServiceRuntime`` per transport holds what outlives a single call: the discovered
URL, the endpoint set and its DNS TTL state, the balancer, the (shared, named) breaker,
the retry budget, the route table and the observers. It never sends or resolves: the
transports resolve DNS and send requests, then report back here. (Building one does read
files: discovery reads the environment and the pod's namespace file, and the DNS
resolver reads the system's resolver configuration.)
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import httpx

from .._balancing.balancer import LoadBalancer
from .._config.model import ServiceConfig
from .._discovery.dns import DnsLookupError, DnsResolver, Resolution
from .._discovery.endpoint_set import EndpointSet
from .._discovery.rules import Discovery, discover
from .._endpoint import Endpoint
from .._exceptions import DiscoveryError, NoHealthyEndpointError, RequestFailedError
from .._observability.hooks import Hooks, HookTable, fire
from .._observability.routes import RouteTable, route_table
from .._policies.breaker.guard import CircuitBreaker
from .._policies.breaker.policy import BreakerPolicy
from .._policies.breaker.registry import breakers
from .._policies.budget import RetryBudget
from . import testmode as _testmode

if TYPE_CHECKING:
    from .._policies.bulkhead import AsyncBulkhead, Bulkhead
    from .._policies.concurrency import ConcurrencyLimiter
    from .._policies.hedge import LatencyWindow
    from .._policies.throttle import Throttle

__all__ = ["ServiceRuntime", "discover_service"]

log = logging.getLogger("svcclient")

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def discover_service(config: ServiceConfig) -> Discovery:
    """The discovery a client of ``config`` makes (its base URL and the rules tried)."""
    return discover(
        config.name,
        config.url,
        namespace=config.namespace,
        port=config.port,
        cluster_domain=config.cluster_domain,
    )


class ServiceRuntime:
    """Shared state for one target service (see the module docstring)."""

    def __init__(
        self,
        config: ServiceConfig,
        hooks: Sequence[Hooks],
        *,
        owns_transport: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.hooks = tuple(hooks)
        self.emit = HookTable(self.hooks, self.name)
        self.discovery: Discovery = discover_service(config)
        self.base_url = httpx.URL(self.discovery.url)
        host = self.base_url.host
        port = self.base_url.port or (443 if self.base_url.scheme == "https" else 80)
        self.origin = Endpoint(host, port)

        mode = config.resolve
        if mode == "auto" and not owns_transport and not config.dns_nameservers:
            # A caller-supplied transport (a mock, a proxy) decides where bytes go.
            mode = "system"
        if _is_ip(host) or host.lower() in _LOCAL_NAMES:
            mode = "system"
        self.resolve_mode = mode

        self.balancer = LoadBalancer(
            config.balancing, config.outlier, clock=clock, on_ejection=self._on_ejection
        )
        self.endpoint_set: EndpointSet | None = None
        self.resolver: DnsResolver | None = None
        if mode == "system":
            self.balancer.set_endpoints([self.origin])
        else:
            self.endpoint_set = EndpointSet(config.name, host, port, clock=clock)
            self.resolver = DnsResolver(
                config.dns_nameservers,
                timeout=config.dns_timeout,
                use_srv=config.use_srv,
                search=config.dns_search,
                allow_addresses=config.dns_allow_addresses,
            )
        self.system_fallback: str | None = None
        """Why DNS gave way to the system resolver (logged once), or None."""
        self.retired: list[Endpoint] = []
        # Set once the first DNS answer (or failure) is in: callers that lose the race for
        # the first refresh wait for it instead of finding no endpoints.
        self.first_resolution = threading.Event()
        if self.endpoint_set is None:
            self.first_resolution.set()
        policy = config.balancing
        self.affinity_from_headers = policy.strategy == "affinity" and bool(
            policy.affinity_header or policy.affinity_cookie
        )

        self.breaker: CircuitBreaker | None = None
        if config.breaker is not None:
            self.breaker = breakers.get_or_create(config.name, config.breaker, clock=clock)
            self._subscribe_breaker(self.breaker)
        self.budget = RetryBudget.from_policy(config.budget, clock=clock) if config.budget else None
        # Hedges get their own budget: racing them on the retries' would starve retries.
        self.hedge_budget = (
            RetryBudget.from_policy(config.budget, clock=clock)
            if config.budget is not None and config.hedge is not None
            else None
        )
        self.routes: RouteTable = route_table(config.name)
        self.retry = config.retry
        t = config.timeout
        self.attempt_timeouts = {"connect": t, "read": t, "write": t, "pool": t}
        # The last caller's httpx timeouts seen and the attempt timeouts they give (each
        # phase capped at ours); replaced whole (see Call.begin_attempt).
        self.phase_timeouts: tuple[dict[str, float | None], dict[str, float]] = (
            dict(self.attempt_timeouts),
            self.attempt_timeouts,
        )
        # config fields the Call reads on every request, one attribute away.
        self.attempt_timeout = t
        self.deadline = config.deadline
        self.deadline_header = config.deadline_header
        # Hedging, throttling and the concurrency limit are off by default: their modules
        # come with the first config that uses them (see _config.model._sections).
        self.latencies: LatencyWindow | None = None
        if config.hedge is not None:
            from .._policies.hedge import LatencyWindow

            self.latencies = LatencyWindow()
        # The statuses that count as failures (the breaker's, or its default: 429, 5xx),
        # as data: the Call tests each response's status against it.
        self.failure_codes: frozenset[int] = (
            config.breaker.failure_status_codes
            if config.breaker is not None
            else BreakerPolicy().failure_status_codes
        )
        # Overload control (both off by default): checked before the bulkhead, fed with
        # every attempt's outcome by the Call.
        self.throttle: Throttle | None = None
        if config.throttle:
            from .._policies.throttle import Throttle

            self.throttle = Throttle(config.throttle, clock=clock)
        # The bulkhead (no adaptive limit configured): the driver's own kind (a thread's or
        # an event loop's), set by the driver; the call takes and gives back its slots.
        self.bulkhead: Bulkhead | AsyncBulkhead | None = None
        self.limiter: ConcurrencyLimiter | None = None
        if config.concurrency is not None:
            from .._policies.concurrency import ConcurrencyLimiter

            self.limiter = ConcurrencyLimiter(
                config.concurrency, clock=clock, on_limit=self._on_limit
            )
            self._on_limit(self.limiter.limit)
        # Nothing for a call to do before admission (no throttle's verdict, no DNS of
        # ours): its first stage is admission itself.
        self.admits_at_once = self.throttle is None and self.endpoint_set is None

    # -- DNS ---------------------------------------------------------------------------

    def refresh_due(self) -> bool:
        """True when this call should re-resolve the service's host (TTL expired)."""
        es = self.endpoint_set
        if es is None:
            return False
        if _testmode.MOCKED_HOSTS and _testmode.is_mocked(self.origin.host):
            # svcclient.testing.mock_service: respx answers the host itself; no DNS.
            if list(es.current) != [self.origin]:
                self.refreshed(Resolution((self.origin,), 0.0, "mock"))
            return False
        return es.needs_refresh(self.clock()) and es.begin_refresh(self.clock())

    def refreshed(self, resolution: Resolution) -> None:
        """Feed a successful DNS answer in; the balancer sees the new endpoint set."""
        es = self.endpoint_set
        assert es is not None
        before = set(es.current)
        es.update(resolution, self.clock())
        after = set(es.current)
        if before != after or not self.balancer.endpoints:
            self.balancer.set_endpoints(list(es.current))
            self.retired.extend(before - after)
        self.first_resolution.set()

    def refresh_failed(self, error: Exception) -> None:
        """Feed a failed lookup in; keeps the last good set, else falls back or empties it."""
        es = self.endpoint_set
        assert es is not None
        es.refresh_failed(error, self.clock())
        try:
            self._after_failed_refresh(es, error)
        finally:
            self.first_resolution.set()

    def _after_failed_refresh(self, es: EndpointSet, error: Exception) -> None:
        if es.current:
            log.warning(
                "%s: DNS refresh failed, keeping %d endpoints: %s",
                self.name,
                len(es.current),
                error,
            )
            return
        timed_out = isinstance(error, DnsLookupError) and error.timed_out
        if self.resolve_mode == "auto" and self.discovery.source != "cluster_dns" and not timed_out:
            # Not in DNS (a docker-compose or /etc/hosts name): let the system resolver try.
            # Not after a timeout: getaddrinfo would ask the same silent server with no
            # time limit, and the call's deadline could not hold.
            if self.system_fallback is None:
                self.system_fallback = str(error)
                log.warning(
                    "%s: DNS lookup failed (%s); falling back to the system resolver: one "
                    "endpoint, no client-side balancing or TTL refresh",
                    self.name,
                    error,
                )
            if not self.balancer.endpoints:
                self.balancer.set_endpoints([self.origin])
            return
        # Nothing to send to: the call's first attempt finds no endpoint and fails with
        # the DiscoveryError (request attached), so it is observed, counted and can fall
        # back like any later call instead of escaping before the pipeline starts.
        self.balancer.set_endpoints([])

    def no_endpoint_error(self, request: httpx.Request | None) -> RequestFailedError:
        """Why there is nothing to send to: a DNS failure names the rules it tried."""
        es = self.endpoint_set
        if es is not None and not es.current and es.last_error is not None:
            return DiscoveryError(
                self.name, self.discovery.tried, f"DNS: {es.last_error}", request=request
            )
        return NoHealthyEndpointError(
            f"{self.name}: no endpoint to send to", service=self.name, request=request
        )

    # -- events ------------------------------------------------------------------------

    def _on_limit(self, limit: int) -> None:
        fire(self.emit.on_concurrency_limit, self.name, limit)

    def _on_ejection(self, endpoint: Endpoint, ejected: bool) -> None:
        if ejected:
            self.retired.append(endpoint)
        fire(self.emit.on_ejection, self.name, endpoint, ejected)

    def _subscribe_breaker(self, breaker: CircuitBreaker) -> None:
        # Breakers are shared by name; subscribe each observer once per breaker (keyed
        # by the observer, so the record lives and dies with the breaker).
        for hook in self.hooks:
            if type(hook).on_breaker_transition is Hooks.on_breaker_transition:
                continue
            breaker.on("state_change", _transition_relay(self.name, hook), key=hook)


def _transition_relay(service: str, hook: Hooks) -> Callable[[str, str], None]:
    def relay(old: str, new: str) -> None:
        hook.on_breaker_transition(service, old, new)

    return relay
