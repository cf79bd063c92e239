"""Prometheus metrics for outbound calls and the resilience machinery around them.

Metrics (the seed's names by default, so dashboards keep working; ``metric_prefix``
prefixes them all -- see "Name clashes" below):

=============================================== ======= ==========================================
name                                            type    labels
=============================================== ======= ==========================================
``http_request_duration_seconds``               hist.   method, route, status_code, target_service
``network_errors_total``                        counter error_type, target_service
``svcclient_circuit_breaker_rejections_total``  counter target_service
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
  ``network_errors_total{error_type}``. A call that failed before any attempt (DNS found
  nothing, deadline already spent) is counted in ``network_errors_total`` only.
* ``network_errors_total`` counts network errors only. Calls the client itself turned
  away are not network errors and have their own counters:
  ``svcclient_circuit_breaker_rejections_total`` (open breaker) and
  ``svcclient_bulkhead_rejections_total`` (full bulkhead).
* Buckets: :data:`DEFAULT_BUCKETS` are OpenTelemetry's advisory boundaries for
  ``http.client.request.duration``; a client adds its per-attempt ``timeout`` and its
  ``deadline`` (``le="2.0"`` then counts the attempts that beat a 2 s timeout). The
  histogram of a registry is created once, by the first client: a later client whose
  timeout is not a bucket reuses it as it is (buckets cannot change after creation).
* Label values are snake_case: a retry ``reason`` such as ``"status 503"`` is reported
  as ``status_503``.
* ``route`` is a template (:mod:`svcclient._observability.routes`), never a raw URL, and ``method``
  outside the standard set is reported as ``_OTHER``: label values must stay few.
* Exemplars: when the call has a sampled trace (from :class:`~svcclient.TracingHooks` or
  a span current in the caller's context), the bucket observation carries
  ``{"trace_id": "<32 hex>"}``. They are exposed in the OpenMetrics format only.

Metric objects are created once per registry and prefix and remembered *on the
registry*, so many clients, many hooks, or the module imported twice never raise
"Duplicated timeseries".

Name clashes
------------
Server-side instrumentations use the same generic names for *incoming* requests
(prometheus-fastapi-instrumentator registers ``http_request_duration_seconds`` with
``handler``/``method`` labels). A same-named metric of another shape in the registry is a
:class:`~svcclient.ConfigError` naming both metrics and the fix: ``metric_prefix``
(``ServiceClient(..., metric_prefix="svcclient")``, ``SVCCLIENT_<NAME>_METRIC_PREFIX`` or
``metric_prefix`` under ``[defaults]`` in the TOML file) or a registry of its own. The
prefix is joined with ``_``; names that already start with ``svcclient_`` do not get
``svcclient`` twice.

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

import bisect
import functools
import logging
import operator
import os
import re
import threading
from collections import deque
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._exceptions import ConfigError
from .._policies.breaker.machine import CLOSED, DISABLED, HALF_OPEN, OPEN
from .hooks import (
    KNOWN_METHODS,
    OTEL_DURATION_BUCKETS,
    TRACE_ID_STATE_KEY,
    AttemptInfo,
    CallInfo,
    Hooks,
)

# prometheus-client is imported when the first PrometheusHooks is made, not with svcclient.
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from .._endpoint import Endpoint

__all__ = ["BREAKER_STATES", "DEFAULT_BUCKETS", "PrometheusHooks", "buckets_with"]

log = logging.getLogger("svcclient")

DEFAULT_BUCKETS: Final = OTEL_DURATION_BUCKETS
"""Histogram buckets: OpenTelemetry's advisory boundaries for ``http.client.request.duration``
(5 ms to 10 s; 0.25, 0.5, 0.75 and 1 s around typical timeouts, so p99 is not read off a
0.5 s-wide bucket). Clients add their timeout and deadline (:func:`buckets_with`)."""


def buckets_with(*extra: float, base: Sequence[float] = DEFAULT_BUCKETS) -> tuple[float, ...]:
    """``base`` (:data:`DEFAULT_BUCKETS`) with the ``extra`` boundaries merged in, sorted.

    >>> buckets_with(2.0, 3.0)[-5:]
    (2.0, 2.5, 3.0, 5.0, 7.5)
    """
    return tuple(sorted({float(b) for b in base} | {float(x) for x in extra if x > 0}))


BREAKER_STATES: Final = {CLOSED: 0, DISABLED: 0, HALF_OPEN: 1, OPEN: 2}
"""Value of ``svcclient_circuit_breaker_state`` per state; ordered by severity so that
``max()`` over workers or instances shows the worst. Unknown states are reported as -1."""

_REGISTRY_ATTR: Final = "_svcclient_metrics"
_LAST_ERROR_KEY: Final = "svcclient.prom.last_error"
# Bounds on the label-child caches; past them children are still used, just not cached.
_CHILD_CACHE_MAX: Final = 20_000
_MAX_REASONS: Final = 32
_registry_lock = threading.Lock()

_M = TypeVar("_M", "Histogram", "Counter", "Gauge")
_PREFIX_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NOT_SNAKE: Final = re.compile(r"[^a-z0-9]+")
_TYPE_NAMES: Final = {"Histogram": "histogram", "Counter": "counter", "Gauge": "gauge"}
# Observations a series holds unfolded before the observing thread folds them itself
# (a scrape folds whatever is there): bounds the memory of a registry nobody scrapes.
_FOLD_AT: Final = 128


def metric_name(name: str, prefix: str) -> str:
    """``name`` under ``prefix`` (joined with ``_``; no doubled ``svcclient_``)."""
    if not prefix:
        return name
    if name.startswith(f"{prefix}_"):
        return name
    return f"{prefix}_{name}"


def snake_case(value: str) -> str:
    """A label value in snake_case: ``"status 503"`` -> ``"status_503"``."""
    return _NOT_SNAKE.sub("_", value.lower()).strip("_") or "other"


def _describe(collector: object) -> str:
    kind = _TYPE_NAMES.get(type(collector).__name__, type(collector).__name__)
    labels = tuple(getattr(collector, "_labelnames", ()))
    doc = getattr(collector, "_documentation", "")
    owner = type(collector).__module__.split(".", 1)[0]
    text = f"a {kind} with labels {labels}"
    if doc:
        text += f" ({doc!r})"
    return f"{text}, registered by {owner}" if owner != "prometheus_client" else text


def _collector(
    cls: type[_M],
    name: str,
    documentation: str,
    *,
    labelnames: Sequence[str],
    registry: CollectorRegistry,
    prefix: str,
    kind_of: type[_M] | None = None,
    **kwargs: Any,
) -> _M:
    try:
        return cls(name, documentation, labelnames, registry=registry, **kwargs)
    except ValueError as exc:
        if "Duplicated timeseries" not in str(exc):
            raise
    # Someone else (an older copy of this module, another library, the app) registered
    # the name. Reuse it when it is the same kind of metric with the same labels: that is
    # an app that declared the seed's metric itself. CollectorRegistry has no public lookup.
    # ``kind_of``: the prometheus-client class that ``cls`` specialises (any instance of
    # it will do).
    base = kind_of or cls
    existing = _registered(registry, name, base)
    if isinstance(existing, base) and tuple(existing._labelnames) == tuple(labelnames):
        return existing
    kind = _TYPE_NAMES.get(base.__name__, base.__name__)
    theirs = _describe(existing) if existing is not None else "another metric"
    raise ConfigError(
        None,
        "metric_prefix",
        prefix,
        f"svcclient's {kind} {name!r} (labels {tuple(labelnames)}) clashes with {theirs} "
        f"already in this Prometheus registry. Fix: give svcclient's metrics a prefix, "
        f'e.g. ServiceClient(..., metric_prefix="svcclient") or '
        f"SVCCLIENT_<NAME>_METRIC_PREFIX=svcclient (PrometheusHooks(metric_prefix=...) "
        f"for your own hooks), or pass svcclient a registry of its own (registry=...)",
    )


def _registered(registry: CollectorRegistry, name: str, cls: type[Any]) -> object | None:
    names = registry._names_to_collectors
    found = names.get(name)
    if found is None and cls.__name__ == "Counter":
        found = names.get(f"{name}_total")
    if found is None:
        for suffix in ("_bucket", "_count", "_sum", "_created", "_total"):
            found = names.get(f"{name}{suffix}")
            if found is not None:
                break
    return found


class _Metrics:
    """The collectors of one (registry, prefix), shared by every PrometheusHooks."""

    def __init__(
        self, registry: CollectorRegistry, prefix: str, buckets: tuple[float, ...]
    ) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def mk(cls: type[Any], name: str, doc: str, labels: Sequence[str], **kw: Any) -> Any:
            return _collector(
                cls,
                metric_name(name, prefix),
                doc,
                labelnames=labels,
                registry=registry,
                prefix=prefix,
                **kw,
            )

        svc = ("target_service",)
        self.buckets = buckets
        self.lock = threading.Lock()
        self.duration: Histogram = mk(
            _folded_histogram() if not _multiprocess() else Histogram,
            "http_request_duration_seconds",
            "Duration of outbound HTTP attempts; status_code 0 means no response.",
            ("method", "route", "status_code", "target_service"),
            kind_of=Histogram,
            buckets=buckets,
        )
        self.network_errors = mk(
            Counter,
            "network_errors",
            "Outbound attempts or calls that failed without an HTTP response.",
            ("error_type", "target_service"),
        )
        self.breaker_rejections = mk(
            Counter,
            "svcclient_circuit_breaker_rejections",
            "Calls or retries turned away by an open circuit breaker (nothing sent).",
            svc,
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
        # Label-children caches: the hot path is one dict lookup, then append/inc.
        self.duration_children: dict[tuple[str, str, int | None, str], Histogram] = {}
        self.duration_pending: dict[tuple[str, str, int | None, str], list[float]] = {}
        self.error_children: dict[tuple[str, str], Counter] = {}
        self.in_flight_children: dict[str, deque[None]] = {}
        self.throttled_children: dict[str, Counter] = {}  # a local rejection stays cheap
        self.ejected_sets: dict[str, set[str]] = {}
        self.reasons: dict[str, str] = {}

    def duration_child(self, key: tuple[str, str, int | None, str]) -> Histogram:
        child = self.duration_children.get(key)
        if child is None:
            method, route, status, service = key
            child = self.duration.labels(
                method if method in KNOWN_METHODS else "_OTHER",
                route,
                str(status) if status else "0",
                service,
            )
            _remember(self.duration_children, key, child)
        return child

    def pending(self, key: tuple[str, str, int | None, str]) -> list[float]:
        """Where the hot path appends the series' observations (see :func:`_folded_histogram`)."""
        child = self.duration_child(key)
        pending = getattr(child, "pending", None)
        if not isinstance(pending, list):
            # Multiprocess mode, or a histogram the app registered: observed at once.
            pending = _Immediate(child.observe)
        _remember(self.duration_pending, key, pending)
        return pending

    def error_child(self, error_type: str, service: str) -> Counter:
        key = (error_type, service)
        child = self.error_children.get(key)
        if child is None:
            child = self.network_errors.labels(error_type, service)
            _remember(self.error_children, key, child)
        return child

    def _after_fork_in_child(self) -> None:
        """In a forked child (see :mod:`svcclient._transports.forksafe`): the parent's
        calls in flight never end here, so the child's gauge counts from zero. (In
        multiprocess mode each process has its own file already.)"""
        for calls in self.in_flight_children.values():
            if type(calls) is deque:
                calls.clear()

    def in_flight_child(self, service: str) -> deque[None]:
        """Calls in flight for one service, cheap to count on every request.

        A Gauge's ``inc``/``dec`` take a lock each (about a fifth of the whole Prometheus
        cost per request). In a single process the count is kept as the length of a deque
        -- ``append``/``pop`` are atomic (one C call, under the GIL or, in a free-threaded
        build, under the deque's own lock) -- and read by the gauge at scrape time. A
        deque, not a list: a list going from one call to none frees its storage, and the
        next call allocates it again. In multiprocess mode the value must live in the
        gauge's shared file, so the deque's ``append``/``pop`` are the gauge's
        ``inc``/``dec``.
        """
        calls = self.in_flight_children.get(service)
        if calls is None:
            gauge = self.in_flight.labels(service)
            if _multiprocess():
                calls = _GaugeCalls(gauge)
            else:
                calls = deque()
                gauge.set_function(calls.__len__)
            _remember(self.in_flight_children, service, calls)
        return calls


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class _Immediate(list[float]):
    """A pending list that observes each value at once (nothing is ever held)."""

    __slots__ = ("_observe",)

    def __init__(self, observe: Any) -> None:
        super().__init__()
        self._observe = observe

    def append(self, value: float) -> None:
        self._observe(value)


class _GaugeCalls(deque[None]):
    """Multiprocess in-flight count: ``append``/``pop`` are the gauge's ``inc``/``dec``."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge: Gauge) -> None:
        super().__init__()
        self._gauge = gauge

    def append(self, value: None) -> None:
        self._gauge.inc()

    def pop(self, index: Any = -1) -> None:
        self._gauge.dec()


@functools.cache
def _folded_histogram() -> type[Histogram]:
    """prometheus-client's Histogram, observed lock-free and folded at scrape time.

    ``Histogram.observe`` takes two locks and scans the buckets (about 8 k instructions,
    most of the Prometheus cost per request). Each series of this subclass has a list,
    ``pending``, that the hot path appends the duration to: ``list.append`` is one C call
    that no other thread can interleave with (under the GIL; in a free-threaded build the
    list's own lock makes it atomic), so observing takes no lock and loses nothing.

    :meth:`fold` moves the pending values into the series' buckets and sum: whenever a
    scrape reads the series (``collect``, ``get_sample_value``: both go through
    ``_child_samples``), and by the observing thread once ``_FOLD_AT`` are pending, which
    bounds memory when nobody scrapes. Folding takes the series' fold lock, copies the
    first ``n`` values and deletes exactly those: values appended meanwhile go to the
    end and wait for the next fold. Each value lands in the bucket ``observe`` would have
    chosen (the first bound >= the value: counted from the sorted values, those up to
    each bound) and the sum adds them in arrival order, so the exposition is what
    ``observe`` would have produced. An observation with an exemplar goes through
    ``observe`` under the same lock, after the values pending before it.
    """
    from prometheus_client import Histogram

    class FoldedHistogram(Histogram):
        def _metric_init(self) -> None:
            super()._metric_init()
            self.pending: list[float] = []
            self._fold_lock = threading.Lock()
            self._bounds = tuple(self._upper_bounds)

        def fold(self) -> None:
            with self._fold_lock:
                self._fold()

        def _fold(self) -> None:
            pending = self.pending
            n = len(pending)
            if not n:
                return
            batch = pending[:n]
            del pending[:n]
            total = self._sum
            total.set(functools.reduce(operator.add, batch, total.get()))
            # Bucket i holds the values in (bound[i - 1], bound[i]]: in the sorted batch,
            # the values <= bound[i] minus those <= bound[i - 1]. One sort (C float
            # compares) and a bisect per bound, not a bisect and a tally per value.
            ordered = sorted(batch)
            buckets = self._buckets
            right = bisect.bisect_right
            below = 0
            for index, bound in enumerate(self._bounds):
                upto = right(ordered, bound, below)
                if upto != below:
                    buckets[index].inc(upto - below)
                    below = upto
                    if upto == n:
                        break

        def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
            with self._fold_lock:
                self._fold()
                super().observe(amount, exemplar)

        def _child_samples(self) -> Any:
            self.fold()
            return super()._child_samples()

    return FoldedHistogram


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> None:
    if len(cache) < _CHILD_CACHE_MAX:
        cache[key] = value


def _metrics_for(
    registry: CollectorRegistry, prefix: str, buckets: tuple[float, ...], strict: bool
) -> _Metrics:
    # Kept on the registry object rather than in a module global, so a second copy of this
    # module (reload, vendoring) finds the collectors the first one registered.
    with _registry_lock:
        per_prefix: dict[str, _Metrics] | None = getattr(registry, _REGISTRY_ATTR, None)
        if per_prefix is None:
            per_prefix = {}
            setattr(registry, _REGISTRY_ATTR, per_prefix)
        metrics = per_prefix.get(prefix)
        if metrics is None:
            metrics = per_prefix[prefix] = _Metrics(registry, prefix, buckets)
        elif metrics.buckets != buckets:
            name = metric_name("http_request_duration_seconds", prefix)
            if strict:
                raise ConfigError(
                    None,
                    "buckets",
                    buckets,
                    f"this registry already has {name} with buckets {metrics.buckets}; "
                    f"use a separate registry or metric_prefix",
                )
            log.debug("svcclient: %s keeps its buckets %s, not %s", name, metrics.buckets, buckets)
        return metrics


def _trace_id(context: object) -> str | None:
    """The sampled trace id of the span current in ``context`` (an OpenTelemetry context
    a call started with), as 32 hex digits; None when it has no sampled span."""
    from opentelemetry import trace

    span_ctx = trace.get_current_span(context).get_span_context()  # type: ignore[arg-type]
    if span_ctx.is_valid and span_ctx.trace_flags.sampled:
        return format(span_ctx.trace_id, "032x")
    return None


class PrometheusHooks(Hooks):
    """Observer that records the svcclient Prometheus metrics (see the module docs).

    ``registry`` defaults to prometheus-client's global ``REGISTRY``. ``buckets`` default
    to :data:`DEFAULT_BUCKETS` plus ``extra_buckets`` (a client passes its timeout and
    deadline); buckets given explicitly must match the registry's histogram if it exists.
    ``metric_prefix`` (default none) prefixes every metric name. Any number of instances
    may share a registry: the collectors are created once per registry and prefix.

    Example::

        from prometheus_client import CollectorRegistry
        registry = CollectorRegistry()
        hooks = PrometheusHooks(registry=registry, metric_prefix="svcclient")
    """

    __slots__ = ("_duration", "_in_flight", "_m")

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        buckets: Sequence[float] | None = None,
        metric_prefix: str = "",
        *,
        extra_buckets: Sequence[float] = (),
    ) -> None:
        strict = buckets is not None
        b = tuple(float(x) for x in buckets) if buckets is not None else DEFAULT_BUCKETS
        if not b or list(b) != sorted(b) or len(set(b)) != len(b):
            raise ConfigError(None, "buckets", buckets, "must be non-empty and increasing")
        if extra_buckets:
            b = buckets_with(*extra_buckets, base=b)
        if metric_prefix and not _PREFIX_RE.fullmatch(metric_prefix):
            raise ConfigError(
                None, "metric_prefix", metric_prefix, "letters, digits, _ and :, not first a digit"
            )
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        self._m = _metrics_for(registry, metric_prefix, b, strict)
        self._duration = self._m.duration_pending
        self._in_flight = self._m.in_flight_children

    # -- per call / per attempt (hot path) --------------------------------------------

    def on_request_start(self, call: CallInfo) -> None:
        """Count the call as in flight."""
        calls = self._in_flight.get(call.service)
        if calls is None:
            calls = self._m.in_flight_child(call.service)
        calls.append(None)

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        """Observe the attempt's duration; count it in ``network_errors_total`` if it failed.

        The observation carries the call's sampled trace id as an exemplar: the one an
        observer put in ``CallInfo.state`` (tracing), else the call's context's."""
        call = attempt.call
        key = (call.method, call.route, attempt.status_code, call.service)
        state = call.state
        trace_id = state.get(TRACE_ID_STATE_KEY) if state else None
        if trace_id is None and call.trace_context is not None:
            trace_id = _trace_id(call.trace_context)
        if trace_id is None:
            pending = self._duration.get(key)
            if pending is None:
                pending = self._m.pending(key)
            pending.append(attempt.duration)
            if len(pending) >= _FOLD_AT:
                self._m.duration_child(key).fold()  # type: ignore[attr-defined]
        else:
            exemplar = {"trace_id": trace_id}
            self._m.duration_child(key).observe(attempt.duration, exemplar=exemplar)
        error_type = attempt.error_type
        if error_type is not None:
            self._m.error_child(error_type, call.service).inc()
            state[_LAST_ERROR_KEY] = error_type

    def on_request_end(self, call: CallInfo) -> None:
        """Leave in flight; count a call-level error no attempt accounted for."""
        m = self._m
        calls = self._in_flight.get(call.service)
        if calls is None:
            calls = m.in_flight_child(call.service)
        # contextlib.suppress would cost a context manager on every request.
        try:  # noqa: SIM105
            calls.pop()
        except IndexError:  # an end without a start: never below zero
            pass
        error_type = call.error_type
        # Attempt errors were counted in on_attempt_end; only an error that did not come
        # from the last attempt (DNS found nothing, a deadline spent while backing off) is
        # new here. An open breaker is not a network error: on_breaker_reject counts it.
        if (
            error_type is not None
            and error_type != "circuit_open"
            and call.state.get(_LAST_ERROR_KEY) != error_type
        ):
            m.error_child(error_type, call.service).inc()

    def calls_in_flight(self, service: str) -> deque[None] | None:
        """``service``'s in-flight deque, for the pipeline to append to and pop itself
        (see :meth:`Hooks.calls_in_flight`: the two methods then run only where they have
        more to do). None for a subclass that overrides either (its own methods run)."""
        cls = type(self)
        if (
            cls.on_request_start is not PrometheusHooks.on_request_start
            or cls.on_request_end is not PrometheusHooks.on_request_end
        ):
            return None
        return self._m.in_flight_child(service)

    # -- resilience events (rare) -------------------------------------------------------

    def on_retry(self, call: CallInfo, delay: float, reason: str) -> None:
        """Count a scheduled retry by snake_case reason (``status_503``; at most 32 distinct
        reasons, then ``other``)."""
        m = self._m
        label = m.reasons.get(reason)
        if label is None:
            with m.lock:
                if len(m.reasons) < _MAX_REASONS:
                    label = m.reasons.setdefault(reason, snake_case(reason))
                else:
                    label = "other"
        m.retries.labels(call.service, label).inc()

    def on_breaker_reject(self, service: str) -> None:
        """Count a call (or a retry) turned away by an open breaker."""
        self._m.breaker_rejections.labels(service).inc()

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
        m = self._m
        child = m.throttled_children.get(service)
        if child is None:
            child = m.throttled.labels(service)
            _remember(m.throttled_children, service, child)
        child.inc()

    def on_concurrency_limit(self, service: str, limit: int) -> None:
        """Set the adaptive concurrency limit gauge."""
        self._m.concurrency_limit.labels(service).set(limit)
