"""Prometheus metrics for outbound calls and the resilience machinery around them.

Metrics (names are fixed so dashboards keep working; ``namespace`` prefixes them all):

=============================================== ======= ==========================================
name                                            type    labels
=============================================== ======= ==========================================
``http_request_duration_seconds``               hist.   method, route, status_code, target_service
``network_errors_total``                        counter error_type, target_service
``svcclient_requests_in_flight``                gauge   target_service
``svcclient_circuit_breaker_state``             gauge   target_service (see ``BREAKER_STATES``)
``svcclient_circuit_breaker_transitions_total`` counter target_service, from_state, to_state
``svcclient_retries_total``                     counter target_service, reason
``svcclient_retry_budget_exhausted_total``      counter target_service
``svcclient_hedged_requests_total``             counter target_service
``svcclient_ejected_endpoints``                 gauge   target_service
``svcclient_bulkhead_rejections_total``         counter target_service
``svcclient_throttled_requests_total``          counter target_service
``svcclient_concurrency_limit``                 gauge   target_service
=============================================== ======= ==========================================

* The histogram is observed once per **attempt** (a retried call counts each attempt).
  An attempt that got no HTTP response (connection refused, timeout, reset...) is observed
  with ``status_code="0"`` -- the convention Envoy and Istio use for "no response" -- so
  slow failures stay in the latency picture; *why* it failed is in
  ``network_errors_total{error_type}``. A call rejected before any attempt (open breaker,
  deadline already spent) is counted in ``network_errors_total`` only.
* ``route`` is a template (:mod:`svcclient._observability.routes`), never a raw URL, and ``method``
  outside the standard set is reported as ``_OTHER``: label values must stay few.
* Exemplars: when the call has a sampled trace (from :class:`~svcclient.TracingHooks` or
  a span current in the caller's context), the bucket observation carries
  ``{"trace_id": "<32 hex>"}``. They are exposed in the OpenMetrics format only.

Metric objects are created once per registry and namespace and remembered *on the
registry*, so many clients, many hooks, or the module imported twice never raise
"Duplicated timeseries".

Multi-process servers (gunicorn, uWSGI)
---------------------------------------
prometheus-client writes values to memory-mapped files when ``PROMETHEUS_MULTIPROC_DIR``
is set *before* it is imported; each worker writes its own file and the scrape endpoint
merges them. Steps:

1. Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory (wipe it on each deploy), in
   the environment of the gunicorn master.
2. Expose metrics with a fresh registry that reads the files::

       from prometheus_client import CollectorRegistry, generate_latest, multiprocess

       def metrics_view():
           registry = CollectorRegistry()
           multiprocess.MultiProcessCollector(registry)
           return generate_latest(registry)

3. In ``gunicorn.conf.py`` drop the files of dead workers::

       from prometheus_client import multiprocess

       def child_exit(server, worker):
           multiprocess.mark_process_dead(worker.pid)

Gauges use a multiprocess mode suited to their meaning: in-flight requests and adaptive
concurrency limits are summed over live workers (``livesum``); breaker state and ejected
endpoints take the worst live worker (``livemax``: each worker has its own breaker, and
``open`` is the highest value).
Exemplars are not supported by prometheus-client in this mode and are dropped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from opentelemetry import context as _otel_context
from opentelemetry import trace as _otel_trace
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from .._exceptions import ConfigError
from .hooks import AttemptInfo, CallInfo, Hooks
from .otel import KNOWN_METHODS, TRACE_ID_STATE_KEY

if TYPE_CHECKING:
    from .._endpoint import Endpoint

__all__ = ["BREAKER_STATES", "DEFAULT_BUCKETS", "PrometheusHooks"]

DEFAULT_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram buckets for service-to-service latency: in-cluster calls are often 1-5 ms,
so the low end is finer than prometheus-client's web defaults; 10 s covers long timeouts."""

BREAKER_STATES: Final = {
    "closed": 0,
    "forced_closed": 0,
    "disabled": 0,
    "half_open": 1,
    "open": 2,
    "forced_open": 2,
}
"""Value of ``svcclient_circuit_breaker_state`` per state; ordered by severity so that
``max()`` over workers or instances shows the worst. Unknown states are reported as -1."""

_REGISTRY_ATTR: Final = "_svcclient_metrics"
_LAST_ERROR_KEY: Final = "svcclient.prom.last_error"
# Bounds on the label-child caches; past them children are still used, just not cached.
_CHILD_CACHE_MAX: Final = 20_000
_MAX_REASONS: Final = 32
_registry_lock = threading.Lock()

_M = TypeVar("_M", Histogram, Counter, Gauge)


def _collector(
    cls: type[_M],
    name: str,
    documentation: str,
    *,
    labelnames: Sequence[str],
    registry: CollectorRegistry,
    namespace: str,
    **kwargs: Any,
) -> _M:
    try:
        return cls(
            name, documentation, labelnames, namespace=namespace, registry=registry, **kwargs
        )
    except ValueError as exc:
        if "Duplicated timeseries" not in str(exc):
            raise
    # Someone else (an older copy of this module, or the app itself) registered the name.
    # Reuse it when it is the same kind of metric; CollectorRegistry has no public lookup.
    full = f"{namespace}_{name}" if namespace else name
    existing = registry._names_to_collectors.get(full)
    if isinstance(existing, cls) and tuple(existing._labelnames) == tuple(labelnames):
        return existing
    raise ConfigError(
        None,
        "registry",
        full,
        f"a different metric named {full!r} is already registered in this registry",
    )


class _Metrics:
    """The collectors of one (registry, namespace), shared by every PrometheusHooks."""

    def __init__(
        self, registry: CollectorRegistry, namespace: str, buckets: tuple[float, ...]
    ) -> None:
        def mk(cls: type[_M], name: str, doc: str, labels: Sequence[str], **kw: Any) -> _M:
            return _collector(
                cls, name, doc, labelnames=labels, registry=registry, namespace=namespace, **kw
            )

        svc = ("target_service",)
        self.buckets = buckets
        self.lock = threading.Lock()
        self.duration = mk(
            Histogram,
            "http_request_duration_seconds",
            "Duration of outbound HTTP attempts; status_code 0 means no response.",
            ("method", "route", "status_code", "target_service"),
            buckets=buckets,
        )
        self.network_errors = mk(
            Counter,
            "network_errors",
            "Outbound attempts or calls that failed without an HTTP response.",
            ("error_type", "target_service"),
        )
        self.in_flight = mk(
            Gauge,
            "svcclient_requests_in_flight",
            "Logical outbound calls in progress.",
            svc,
            multiprocess_mode="livesum",
        )
        self.breaker_state = mk(
            Gauge,
            "svcclient_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half_open, 2 open.",
            svc,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = mk(
            Counter,
            "svcclient_circuit_breaker_transitions",
            "Circuit breaker state changes.",
            ("target_service", "from_state", "to_state"),
        )
        self.retries = mk(
            Counter,
            "svcclient_retries",
            "Retries scheduled, by reason.",
            ("target_service", "reason"),
        )
        self.budget_exhausted = mk(
            Counter,
            "svcclient_retry_budget_exhausted",
            "Retries denied because the retry budget was spent.",
            svc,
        )
        self.hedges = mk(
            Counter, "svcclient_hedged_requests", "Hedged (speculative) attempts sent.", svc
        )
        self.ejected = mk(
            Gauge,
            "svcclient_ejected_endpoints",
            "Endpoints currently ejected from load balancing.",
            svc,
            multiprocess_mode="livemax",
        )
        self.bulkhead_rejections = mk(
            Counter,
            "svcclient_bulkhead_rejections",
            "Calls rejected because the bulkhead was full.",
            svc,
        )
        self.throttled = mk(
            Counter,
            "svcclient_throttled_requests",
            "Calls rejected locally by adaptive throttling (never sent).",
            svc,
        )
        self.concurrency_limit = mk(
            Gauge,
            "svcclient_concurrency_limit",
            "Current adaptive concurrency limit (calls in flight).",
            svc,
            multiprocess_mode="livesum",
        )
        # Label-children caches: the hot path is one dict lookup, then observe/inc.
        self.duration_children: dict[tuple[str, str, int | None, str], Histogram] = {}
        self.error_children: dict[tuple[str, str], Counter] = {}
        self.in_flight_children: dict[str, _InFlight] = {}
        self.ejected_sets: dict[str, set[str]] = {}
        self.reasons: set[str] = set()

    def duration_child(self, key: tuple[str, str, int | None, str]) -> Histogram:
        method, route, status, service = key
        child = self.duration.labels(
            method if method in KNOWN_METHODS else "_OTHER",
            route,
            str(status) if status else "0",
            service,
        )
        _remember(self.duration_children, key, child)
        return child

    def error_child(self, error_type: str, service: str) -> Counter:
        key = (error_type, service)
        child = self.error_children.get(key)
        if child is None:
            child = self.network_errors.labels(error_type, service)
            _remember(self.error_children, key, child)
        return child

    def in_flight_child(self, service: str) -> _InFlight:
        child = self.in_flight_children.get(service)
        if child is None:
            child = _InFlight(self.in_flight.labels(service))
            _remember(self.in_flight_children, service, child)
        return child


class _InFlight:
    """Calls in flight for one service, cheap to count on every request.

    A Gauge's ``inc``/``dec`` take a lock each (about a fifth of the whole Prometheus cost
    per request). In a single process the count is kept as the length of a list —
    ``append``/``pop`` are atomic under the GIL — and read by the gauge at scrape time. In
    multiprocess mode the value must live in the gauge's shared file, so it is inc/dec.
    """

    __slots__ = ("enter", "leave")

    def __init__(self, gauge: Gauge) -> None:
        self.enter: Callable[[], object]
        self.leave: Callable[[], object]
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.enter, self.leave = gauge.inc, gauge.dec
            return
        calls: list[None] = []
        gauge.set_function(calls.__len__)
        self.enter = functools.partial(calls.append, None)
        self.leave = functools.partial(_pop, calls)


def _pop(calls: list[None]) -> None:
    with contextlib.suppress(IndexError):  # an end without a start: never below zero
        calls.pop()


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> None:
    if len(cache) < _CHILD_CACHE_MAX:
        cache[key] = value


def _metrics_for(
    registry: CollectorRegistry, namespace: str, buckets: tuple[float, ...]
) -> _Metrics:
    # Kept on the registry object rather than in a module global, so a second copy of this
    # module (reload, vendoring) finds the collectors the first one registered.
    with _registry_lock:
        per_ns: dict[str, _Metrics] | None = getattr(registry, _REGISTRY_ATTR, None)
        if per_ns is None:
            per_ns = {}
            setattr(registry, _REGISTRY_ATTR, per_ns)
        metrics = per_ns.get(namespace)
        if metrics is None:
            metrics = per_ns[namespace] = _Metrics(registry, namespace, buckets)
        elif metrics.buckets != buckets:
            raise ConfigError(
                None,
                "buckets",
                buckets,
                f"this registry already has http_request_duration_seconds with buckets "
                f"{metrics.buckets}; use a separate registry or namespace",
            )
        return metrics


def _current_trace_id() -> str | None:
    span_ctx = _otel_trace.get_current_span().get_span_context()
    if span_ctx.is_valid and span_ctx.trace_flags.sampled:
        return format(span_ctx.trace_id, "032x")
    return None


class PrometheusHooks(Hooks):
    """Observer that records the svcclient Prometheus metrics (see the module docs).

    ``registry`` defaults to prometheus-client's global ``REGISTRY``; ``buckets`` to
    :data:`DEFAULT_BUCKETS`; ``namespace`` (default none) prefixes every metric name.
    Any number of instances may share a registry: the collectors are created once.

    Example::

        from prometheus_client import CollectorRegistry
        registry = CollectorRegistry()
        hooks = PrometheusHooks(registry=registry)
    """

    __slots__ = ("_duration", "_m")

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        namespace: str = "",
    ) -> None:
        b = tuple(float(x) for x in buckets)
        if not b or list(b) != sorted(b) or len(set(b)) != len(b):
            raise ConfigError(None, "buckets", buckets, "must be non-empty and increasing")
        self._m = _metrics_for(REGISTRY if registry is None else registry, namespace, b)
        self._duration = self._m.duration_children

    # -- per call / per attempt (hot path) --------------------------------------------

    def on_request_start(self, call: CallInfo) -> None:
        """Count the call as in flight."""
        child = self._m.in_flight_children.get(call.service)
        if child is None:
            child = self._m.in_flight_child(call.service)
        child.enter()

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        """Observe the attempt's duration; count it in ``network_errors_total`` if it failed."""
        call = attempt.call
        key = (call.method, call.route, attempt.status_code, call.service)
        child = self._duration.get(key)
        if child is None:
            child = self._m.duration_child(key)
        state = call.state
        trace_id = state.get(TRACE_ID_STATE_KEY) if state else None
        if trace_id is None and _otel_context.get_current():
            trace_id = _current_trace_id()
        if trace_id is None:
            child.observe(attempt.duration)
        else:
            child.observe(attempt.duration, exemplar={"trace_id": trace_id})
        error_type = attempt.error_type
        if error_type is not None:
            self._m.error_child(error_type, call.service).inc()
            state[_LAST_ERROR_KEY] = error_type

    def on_request_end(self, call: CallInfo) -> None:
        """Leave in flight; count a call-level error no attempt accounted for."""
        m = self._m
        child = m.in_flight_children.get(call.service)
        if child is None:
            child = m.in_flight_child(call.service)
        child.leave()
        error_type = call.error_type
        # Attempt errors were counted in on_attempt_end; only an error that did not come
        # from the last attempt (circuit_open before sending, a deadline spent while
        # backing off) is new here.
        if error_type is not None and call.state.get(_LAST_ERROR_KEY) != error_type:
            m.error_child(error_type, call.service).inc()

    # -- resilience events (rare) -------------------------------------------------------

    def on_retry(self, call: CallInfo, delay: float, reason: str) -> None:
        """Count a scheduled retry by reason (at most 32 distinct reasons, then ``other``)."""
        m = self._m
        if reason not in m.reasons:
            with m.lock:
                if len(m.reasons) < _MAX_REASONS:
                    m.reasons.add(reason)
                else:
                    reason = "other"
        m.retries.labels(call.service, reason).inc()

    def on_retry_budget_exhausted(self, service: str) -> None:
        """Count a retry denied by the retry budget."""
        self._m.budget_exhausted.labels(service).inc()

    def on_breaker_transition(self, service: str, old: str, new: str) -> None:
        """Set the breaker state gauge and count the transition."""
        m = self._m
        m.breaker_state.labels(service).set(BREAKER_STATES.get(new, -1))
        m.breaker_transitions.labels(service, old, new).inc()

    def on_ejection(self, service: str, endpoint: Endpoint, ejected: bool) -> None:
        """Track the set of ejected endpoints; the gauge is its size (idempotent)."""
        m = self._m
        with m.lock:
            current = m.ejected_sets.setdefault(service, set())
            if ejected:
                current.add(endpoint.key)
            else:
                current.discard(endpoint.key)
            m.ejected.labels(service).set(len(current))

    def on_bulkhead_rejected(self, service: str) -> None:
        """Count a call rejected by a full bulkhead."""
        self._m.bulkhead_rejections.labels(service).inc()

    def on_hedge(self, service: str) -> None:
        """Count a hedged attempt."""
        self._m.hedges.labels(service).inc()

    def on_throttled(self, service: str) -> None:
        """Count a call rejected locally by adaptive throttling."""
        self._m.throttled.labels(service).inc()

    def on_concurrency_limit(self, service: str, limit: int) -> None:
        """Set the adaptive concurrency limit gauge."""
        self._m.concurrency_limit.labels(service).set(limit)
