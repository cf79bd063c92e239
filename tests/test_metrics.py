"""PrometheusHooks: names, labels, counts and buckets read back from a fresh registry."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from svcclient import ServiceClient
from svcclient._endpoint import Endpoint
from svcclient._exceptions import ConfigError
from svcclient._observability import prometheus as _metrics
from svcclient._observability.hooks import AttemptInfo, CallInfo, call_ended
from svcclient._observability.otel import TRACE_ID_STATE_KEY, TracingHooks
from svcclient._observability.prometheus import DEFAULT_BUCKETS, PrometheusHooks
from svcclient._observability.routes import RouteTable

DUR = "http_request_duration_seconds"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make_call(service: str = "users", route: str = "/users/{id}", method: str = "GET") -> CallInfo:
    """A call as the pipeline makes it: the current OpenTelemetry context is its own."""
    from opentelemetry import context

    req = httpx.Request(method, f"http://{service}.svc/users/42")
    now = time.perf_counter()
    return CallInfo(service, method, route, req, now, trace_context=context.get_current() or None)


def attempt(
    call: CallInfo,
    number: int = 0,
    *,
    status: int | None = 200,
    error: str | None = None,
    duration: float = 0.003,
) -> AttemptInfo:
    now = time.perf_counter()
    return AttemptInfo(call, number, None, call.request, now, status, error, duration)


def run_call(hooks: PrometheusHooks, call: CallInfo, *attempts: AttemptInfo) -> None:
    hooks.on_request_start(call)
    for a in attempts:
        hooks.on_attempt_start(a)
        hooks.on_attempt_end(a)
    last = attempts[-1] if attempts else None
    status, error = (last.status_code, last.error_type) if last is not None else (None, None)
    hooks.on_request_end(call_ended(call, len(attempts), status, error, 0.01))


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def dur_labels(status: str = "200", route: str = "/users/{id}", **kw: str) -> dict[str, str]:
    return {
        "method": "GET",
        "route": route,
        "status_code": status,
        "target_service": "users",
        **kw,
    }


def test_attempt_lands_in_its_bucket(registry: CollectorRegistry) -> None:
    """A 60 ms attempt is counted in le=0.075 and above, not in le=0.05."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    run_call(hooks, call, attempt(call, duration=0.06))
    assert value(registry, f"{DUR}_count", **dur_labels()) == 1
    assert value(registry, f"{DUR}_sum", **dur_labels()) == pytest.approx(0.06)
    assert value(registry, f"{DUR}_bucket", **dur_labels(le="0.05")) == 0
    assert value(registry, f"{DUR}_bucket", **dur_labels(le="0.075")) == 1
    assert value(registry, f"{DUR}_bucket", **dur_labels(le="+Inf")) == 1


def test_default_buckets_are_otels_advisory_boundaries() -> None:
    """DEFAULT_BUCKETS are the HTTP semconv advisory boundaries, 5 ms to 10 s."""
    assert DEFAULT_BUCKETS == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
    )  # fmt: skip


def _bucket_bounds(registry: CollectorRegistry, name: str = DUR) -> list[str]:
    return [
        s.labels["le"]
        for m in registry.collect()
        if m.name == name
        for s in m.samples
        if s.name.endswith("_bucket")
    ]


def test_client_timeout_and_deadline_become_buckets(registry: CollectorRegistry) -> None:
    """A client with timeout 1.5 and deadline 4 adds le=1.5 and le=4.0 to OTel's set."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with ServiceClient(
        "users", url="http://users:80", timeout=1.5, deadline=4.0, transport=transport,
        registry=registry,
    ) as client:  # fmt: skip
        client.get("/users/1")
    bounds = _bucket_bounds(registry)
    assert "1.5" in bounds and "4.0" in bounds
    assert bounds.index("1.5") == bounds.index("1.0") + 1
    assert len(bounds) == len(DEFAULT_BUCKETS) + 3  # + 1.5, 4.0 and +Inf


def test_second_client_with_other_timeout_reuses_the_histogram(
    registry: CollectorRegistry,
) -> None:
    """A later client with another timeout shares the registry's histogram, no error."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    for timeout in (1.5, 0.3):
        with ServiceClient(
            "users", url="http://users:80", timeout=timeout, transport=transport,
            registry=registry,
        ) as client:  # fmt: skip
            client.get("/users/1")
    assert value(registry, f"{DUR}_count", **dur_labels(route="/users/{id}")) == 2
    assert "0.3" not in _bucket_bounds(registry)


def test_every_attempt_is_observed(registry: CollectorRegistry) -> None:
    """A retried call observes each attempt under its own status code."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    run_call(hooks, call, attempt(call, status=503), attempt(call, 1, status=200))
    assert value(registry, f"{DUR}_count", **dur_labels("503")) == 1
    assert value(registry, f"{DUR}_count", **dur_labels("200")) == 1


def test_network_error_uses_status_zero_and_counts_type(registry: CollectorRegistry) -> None:
    """An attempt without response is observed as status_code 0 and counted by error type."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    run_call(hooks, call, attempt(call, status=None, error="connect_refused", duration=0.2))
    assert value(registry, f"{DUR}_count", **dur_labels("0")) == 1
    assert value(registry, f"{DUR}_bucket", **dur_labels("0", le="0.1")) == 0
    assert value(registry, f"{DUR}_bucket", **dur_labels("0", le="0.25")) == 1
    errors = "network_errors_total"
    labels = {"error_type": "connect_refused", "target_service": "users"}
    assert value(registry, errors, **labels) == 1


def test_call_error_is_not_double_counted(registry: CollectorRegistry) -> None:
    """A call failing with its last attempt's error counts that error once."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    run_call(
        hooks,
        call,
        attempt(call, status=None, error="reset"),
        attempt(call, 1, status=None, error="reset"),
    )
    assert value(registry, "network_errors_total", error_type="reset", target_service="users") == 2


def test_breaker_rejection_is_not_a_network_error(registry: CollectorRegistry) -> None:
    """A call the breaker rejected counts in breaker rejections, not network_errors_total."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    hooks.on_request_start(call)
    hooks.on_breaker_reject("users")
    hooks.on_request_end(call_ended(call, 1, None, "circuit_open", 0.01))
    labels = {"error_type": "circuit_open", "target_service": "users"}
    assert value(registry, "network_errors_total", **labels) is None
    rejected = "svcclient_circuit_breaker_rejections_total"
    assert value(registry, rejected, target_service="users") == 1
    assert value(registry, f"{DUR}_count", **dur_labels("0")) is None


def test_dns_failure_without_attempt_is_counted(registry: CollectorRegistry) -> None:
    """A call that found no endpoint (DNS) counts dns_failure once, no histogram."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    hooks.on_request_start(call)
    hooks.on_request_end(call_ended(call, 1, None, "dns_failure", 0.01))
    labels = {"error_type": "dns_failure", "target_service": "users"}
    assert value(registry, "network_errors_total", **labels) == 1
    assert value(registry, f"{DUR}_count", **dur_labels("0")) is None


def test_call_level_error_after_attempt_error_is_counted(registry: CollectorRegistry) -> None:
    """A deadline spent while backing off after a reset counts both errors."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    hooks.on_request_start(call)
    a = attempt(call, status=None, error="reset")
    hooks.on_attempt_end(a)
    hooks.on_request_end(call_ended(call, 1, None, "deadline_exceeded", 0.01))
    assert value(registry, "network_errors_total", error_type="reset", target_service="users") == 1
    labels = {"error_type": "deadline_exceeded", "target_service": "users"}
    assert value(registry, "network_errors_total", **labels) == 1


def test_in_flight_gauge_follows_calls(registry: CollectorRegistry) -> None:
    """In-flight rises on request start and falls on request end."""
    hooks = PrometheusHooks(registry)
    calls = [make_call() for _ in range(3)]
    for c in calls:
        hooks.on_request_start(c)
    assert value(registry, "svcclient_requests_in_flight", target_service="users") == 3
    for c in calls[:2]:
        hooks.on_request_end(c)
    assert value(registry, "svcclient_requests_in_flight", target_service="users") == 1


def test_breaker_state_and_transitions(registry: CollectorRegistry) -> None:
    """The breaker gauge holds the numeric state; transitions are counted by from/to."""
    hooks = PrometheusHooks(registry)
    hooks.on_breaker_transition("users", "closed", "open")
    assert value(registry, "svcclient_circuit_breaker_state", target_service="users") == 2
    hooks.on_breaker_transition("users", "open", "half_open")
    assert value(registry, "svcclient_circuit_breaker_state", target_service="users") == 1
    hooks.on_breaker_transition("users", "half_open", "closed")
    assert value(registry, "svcclient_circuit_breaker_state", target_service="users") == 0
    hooks.on_breaker_transition("users", "closed", "weird")
    assert value(registry, "svcclient_circuit_breaker_state", target_service="users") == -1
    name = "svcclient_circuit_breaker_transitions_total"
    labels = {"target_service": "users", "from_state": "closed", "to_state": "open"}
    assert value(registry, name, **labels) == 1


def test_resilience_counters(registry: CollectorRegistry) -> None:
    """Retries (by reason), budget exhaustion, hedges and bulkhead rejections are counted."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    hooks.on_retry(call, 0.1, "status 503")
    hooks.on_retry(call, 0.2, "status 503")
    hooks.on_retry(call, 0.2, "read_timeout")
    hooks.on_retry_budget_exhausted("users")
    hooks.on_hedge("users")
    hooks.on_hedge("users")
    hooks.on_bulkhead_rejected("users")
    svc = {"target_service": "users"}
    assert value(registry, "svcclient_retries_total", reason="status_503", **svc) == 2
    assert value(registry, "svcclient_retries_total", reason="read_timeout", **svc) == 1
    assert value(registry, "svcclient_retry_budget_exhausted_total", **svc) == 1
    assert value(registry, "svcclient_hedged_requests_total", **svc) == 2
    assert value(registry, "svcclient_bulkhead_rejections_total", **svc) == 1


def test_retry_reasons_are_capped(registry: CollectorRegistry) -> None:
    """Free-form retry reasons cannot grow the label set past 32 values."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    for i in range(40):
        hooks.on_retry(call, 0.0, f"reason-{i}")
    svc = {"target_service": "users"}
    assert value(registry, "svcclient_retries_total", reason="other", **svc) == 8
    assert value(registry, "svcclient_retries_total", reason="reason_35", **svc) is None
    assert value(registry, "svcclient_retries_total", reason="reason_31", **svc) == 1


@pytest.mark.parametrize(
    ("reason", "label"),
    [("status 503", "status_503"), ("Read-Timeout", "read_timeout"), ("  ", "other")],
)
def test_retry_reason_labels_are_snake_case(
    reason: str, label: str, registry: CollectorRegistry
) -> None:
    """Retry reasons are exported as snake_case label values."""
    hooks = PrometheusHooks(registry)
    hooks.on_retry(make_call(), 0.0, reason)
    assert value(registry, "svcclient_retries_total", reason=label, target_service="users") == 1


def test_ejected_gauge_counts_distinct_endpoints(registry: CollectorRegistry) -> None:
    """Ejecting an endpoint twice counts it once; returning it lowers the gauge."""
    hooks = PrometheusHooks(registry)
    a, b = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)
    hooks.on_ejection("users", a, True)
    hooks.on_ejection("users", a, True)
    hooks.on_ejection("users", b, True)
    assert value(registry, "svcclient_ejected_endpoints", target_service="users") == 2
    hooks.on_ejection("users", a, False)
    assert value(registry, "svcclient_ejected_endpoints", target_service="users") == 1


def test_unknown_method_is_folded(registry: CollectorRegistry) -> None:
    """A non-standard method is reported as _OTHER to keep the label set bounded."""
    hooks = PrometheusHooks(registry)
    call = make_call(method="FROBNICATE")
    run_call(hooks, call, attempt(call))
    assert value(registry, f"{DUR}_count", **dur_labels(method="_OTHER")) == 1


def test_route_cap_bounds_the_series(registry: CollectorRegistry) -> None:
    """With RouteTable(max_routes=100), 250 distinct routes give at most 101 route labels."""
    hooks = PrometheusHooks(registry)
    table = RouteTable(max_routes=100)
    for i in range(250):
        word = format(i, "b").replace("0", "a").replace("1", "b")  # a route name, not an id
        call = make_call(route=table.route(f"/endpoint-{word}/users/{i}"))
        run_call(hooks, call, attempt(call))
    routes = {
        s.labels["route"]
        for m in registry.collect()
        if m.name == DUR
        for s in m.samples
        if s.name.endswith("_count")
    }
    assert len(routes) == 101
    assert "other" in routes
    assert value(registry, f"{DUR}_count", **dur_labels(route="other")) == 150


def test_many_hooks_share_one_set_of_collectors(registry: CollectorRegistry) -> None:
    """Creating many observers on one registry never raises and they count together."""
    hooks = [PrometheusHooks(registry) for _ in range(50)]
    for h in hooks:
        call = make_call()
        run_call(h, call, attempt(call))
    assert value(registry, f"{DUR}_count", **dur_labels()) == 50


def test_default_registry_can_be_used_repeatedly() -> None:
    """Two observers on the global REGISTRY do not raise Duplicated timeseries."""
    PrometheusHooks()
    PrometheusHooks()
    assert REGISTRY.get_sample_value("svcclient_requests_in_flight", {}) is None


def _second_copy_of_metrics_module() -> object:
    name = "svcclient._observability._prometheus_copy"
    spec = importlib.util.spec_from_file_location(name, _metrics.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_second_import_of_module_reuses_collectors(registry: CollectorRegistry) -> None:
    """A second copy of the module (reload, vendoring) finds the registered collectors."""
    PrometheusHooks(registry)
    copy = _second_copy_of_metrics_module()
    other = copy.PrometheusHooks(registry)  # type: ignore[attr-defined]
    call = make_call()
    run_call(other, call, attempt(call))
    assert value(registry, f"{DUR}_count", **dur_labels()) == 1


def test_existing_collector_with_same_shape_is_reused(registry: CollectorRegistry) -> None:
    """An app that registered network_errors_total with the same labels shares it."""
    mine = Counter(
        "network_errors", "app's own", ["error_type", "target_service"], registry=registry
    )
    hooks = PrometheusHooks(registry)
    call = make_call()
    run_call(hooks, call, attempt(call, status=None, error="reset"))
    assert mine.labels("reset", "users")._value.get() == 1


def test_existing_collector_with_other_labels_is_a_config_error(
    registry: CollectorRegistry,
) -> None:
    """A same-named metric with other labels: the error names both metrics and the fix."""
    Counter("network_errors", "app's own", ["kind"], registry=registry)
    with pytest.raises(ConfigError) as info:
        PrometheusHooks(registry)
    text = str(info.value)
    assert "network_errors" in text and "('kind',)" in text and "app's own" in text
    assert "('error_type', 'target_service')" in text
    assert 'metric_prefix="svcclient"' in text and "registry" in text
    assert info.value.key == "metric_prefix"


def test_conflicting_buckets_on_one_registry(registry: CollectorRegistry) -> None:
    """Explicit buckets unlike the registry's histogram (same prefix) are a config error."""
    PrometheusHooks(registry)
    with pytest.raises(ConfigError, match="buckets"):
        PrometheusHooks(registry, buckets=(0.1, 1.0))
    PrometheusHooks(registry, buckets=list(DEFAULT_BUCKETS))


@pytest.mark.parametrize("bad", [(), (1.0, 0.5), (0.1, 0.1)])
def test_bad_buckets(bad: tuple[float, ...], registry: CollectorRegistry) -> None:
    """Buckets must be non-empty and strictly increasing."""
    with pytest.raises(ConfigError):
        PrometheusHooks(registry, buckets=bad)


def test_metric_prefix_prefixes_names(registry: CollectorRegistry) -> None:
    """A metric prefix prefixes every metric name and lives beside the unprefixed set."""
    plain = PrometheusHooks(registry)
    prefixed = PrometheusHooks(registry, buckets=(0.1, 1.0), metric_prefix="edge")
    call = make_call()
    run_call(prefixed, call, attempt(call))
    run_call(plain, call, attempt(call))
    assert value(registry, f"edge_{DUR}_count", **dur_labels()) == 1
    assert value(registry, "edge_svcclient_requests_in_flight", target_service="users") == 0
    assert value(registry, f"{DUR}_count", **dur_labels()) == 1


def test_svcclient_prefix_is_not_doubled(registry: CollectorRegistry) -> None:
    """metric_prefix="svcclient" prefixes the seed's names; svcclient_* names stay."""
    hooks = PrometheusHooks(registry, metric_prefix="svcclient")
    call = make_call()
    run_call(hooks, call, attempt(call, status=None, error="reset"))
    assert value(registry, f"svcclient_{DUR}_count", **dur_labels("0")) == 1
    labels = {"error_type": "reset", "target_service": "users"}
    assert value(registry, "svcclient_network_errors_total", **labels) == 1
    assert value(registry, "svcclient_requests_in_flight", target_service="users") == 0
    assert value(registry, f"{DUR}_count", **dur_labels("0")) is None


@pytest.mark.parametrize("bad", ["1abc", "has space", "dash-ed"])
def test_bad_metric_prefix_is_a_config_error(bad: str, registry: CollectorRegistry) -> None:
    """A prefix that would make an invalid metric name is refused up front."""
    with pytest.raises(ConfigError, match="metric_prefix"):
        PrometheusHooks(registry, metric_prefix=bad)


def test_client_metric_prefix_option(registry: CollectorRegistry) -> None:
    """ServiceClient(metric_prefix=...) names the client's metrics with the prefix."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with ServiceClient(
        "users", url="http://users:80", metric_prefix="svcclient", transport=transport,
        registry=registry,
    ) as client:  # fmt: skip
        client.get("/users/1")
    assert value(registry, f"svcclient_{DUR}_count", **dur_labels(route="/users/{id}")) == 1
    assert value(registry, f"{DUR}_count", **dur_labels(route="/users/{id}")) is None


@pytest.fixture
def sdk_tracer() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    yield provider
    provider.shutdown()


def _exemplar_trace_ids(registry: CollectorRegistry) -> set[str]:
    return {
        s.exemplar.labels["trace_id"]
        for m in registry.collect()
        if m.name == DUR
        for s in m.samples
        if s.exemplar is not None
    }


def test_exemplar_from_current_span(
    registry: CollectorRegistry, sdk_tracer: TracerProvider
) -> None:
    """With an SDK span current in the caller's context, the bucket carries its trace id."""
    hooks = PrometheusHooks(registry)
    tracer = sdk_tracer.get_tracer("test")
    with tracer.start_as_current_span("caller") as span:
        call = make_call()
        run_call(hooks, call, attempt(call))
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert _exemplar_trace_ids(registry) == {trace_id}
    assert f'trace_id="{trace_id}"' in openmetrics_latest(registry).decode()  # type: ignore[no-untyped-call]


def test_exemplar_from_tracing_hooks(
    registry: CollectorRegistry, sdk_tracer: TracerProvider
) -> None:
    """TracingHooks' trace id (kept in call.state) becomes the exemplar without a caller span."""
    tracing, prom = TracingHooks(sdk_tracer), PrometheusHooks(registry)
    call = make_call()
    a = attempt(call)
    for h in (tracing, prom):
        h.on_request_start(call)
    for h in (tracing, prom):
        h.on_attempt_start(a)
    trace_id = call.state[TRACE_ID_STATE_KEY]
    for h in (tracing, prom):
        h.on_attempt_end(a)
    for h in (tracing, prom):
        h.on_request_end(call)
    assert _exemplar_trace_ids(registry) == {trace_id}


def test_no_exemplar_without_trace(registry: CollectorRegistry) -> None:
    """Without an active trace the observation has no exemplar."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    run_call(hooks, call, attempt(call))
    assert _exemplar_trace_ids(registry) == set()


def _series_samples(registry: CollectorRegistry, name: str = DUR) -> list[tuple[str, str, float]]:
    """(sample name, le, value) of every histogram sample but ``_created``."""
    return [
        (s.name, s.labels.get("le", ""), s.value)
        for m in registry.collect()
        if m.name == name
        for s in m.samples
        if not s.name.endswith("_created")
    ]


def test_lock_free_histogram_exposes_what_observe_would() -> None:
    """Durations appended on the hot path and folded at scrape time give the buckets,
    count and (bit for bit) sum that prometheus-client's own Histogram.observe gives,
    bucket bounds themselves included."""
    import random

    from prometheus_client import Histogram

    rng = random.Random(16)
    durations = [rng.expovariate(20.0) for _ in range(700)] + list(DEFAULT_BUCKETS) * 3
    durations += [0.0, 1e-9, 10.000001, 99.0]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    hooks = PrometheusHooks(ours)
    plain = Histogram(
        DUR, "x", ["method", "route", "status_code", "target_service"], registry=theirs,
        buckets=DEFAULT_BUCKETS,
    ).labels("GET", "/users/{id}", "200", "users")  # fmt: skip
    call = make_call()
    for i, d in enumerate(durations):
        hooks.on_attempt_end(attempt(call, duration=d))
        plain.observe(d)
        if i % 300 == 299:  # scrapes in between fold what is pending
            _series_samples(ours)
    assert _series_samples(ours) == _series_samples(theirs)
    assert value(ours, f"{DUR}_count", **dur_labels()) == len(durations)


def test_lock_free_histogram_loses_nothing_under_threads(registry: CollectorRegistry) -> None:
    """Eight threads observing while another scrapes: every observation is counted once,
    and each scrape's buckets are cumulative and its count never goes down."""
    import threading

    hooks = PrometheusHooks(registry)
    per_thread = 2000
    start = threading.Barrier(9)

    def observe(k: int) -> None:
        call = make_call()
        start.wait()
        for i in range(per_thread):
            hooks.on_attempt_end(attempt(call, duration=0.001 * ((i + k) % 40)))

    threads = [threading.Thread(target=observe, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    start.wait()
    counts: list[float] = []
    while (any(t.is_alive() for t in threads) and len(counts) < 200) or len(counts) < 3:
        time.sleep(0.001)
        buckets = [v for name, _, v in _series_samples(registry) if name.endswith("_bucket")]
        assert buckets == sorted(buckets)
        counts.append(value(registry, f"{DUR}_count", **dur_labels()) or 0.0)
    for t in threads:
        t.join()
    assert counts == sorted(counts)
    assert value(registry, f"{DUR}_count", **dur_labels()) == 8 * per_thread
    assert value(registry, f"{DUR}_bucket", **dur_labels(le="+Inf")) == 8 * per_thread


def test_unscraped_histogram_holds_a_bounded_backlog(registry: CollectorRegistry) -> None:
    """Without any scrape, the observing thread folds the backlog itself: at most
    ``_FOLD_AT`` durations wait, and the buckets already hold the rest."""
    hooks = PrometheusHooks(registry)
    call = make_call()
    for _ in range(1000):
        hooks.on_attempt_end(attempt(call))
    (pending,) = hooks._m.duration_pending.values()
    assert len(pending) < _metrics._FOLD_AT
    child = next(iter(hooks._m.duration_children.values()))
    assert child._buckets[0].get() == 1000 - len(pending)


def test_app_registered_histogram_is_observed_at_once(registry: CollectorRegistry) -> None:
    """A same-shaped histogram the app registered itself is shared and observed at once
    (it has no fold at scrape time to rely on)."""
    from prometheus_client import Histogram

    mine = Histogram(
        DUR, "app's own", ["method", "route", "status_code", "target_service"],
        registry=registry, buckets=DEFAULT_BUCKETS,
    )  # fmt: skip
    hooks = PrometheusHooks(registry)
    call = make_call()
    run_call(hooks, call, attempt(call, duration=0.06))
    child = mine.labels("GET", "/users/{id}", "200", "users")
    assert child._sum.get() == pytest.approx(0.06)
