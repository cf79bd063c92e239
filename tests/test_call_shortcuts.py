"""The pipeline's per-call shortcuts keep the observers' figures exact.

PrometheusHooks counts a service's calls in flight through a tally the pipeline appends
to and pops (``Hooks.calls_in_flight``); a call tracing sat out (``Hooks.enabled``)
hears only Prometheus' events; a one-endpoint balancer is taken without calling ``start()``; a
success closes the call's books as it is recorded. Each test fails when its shortcut
loses or doubles a count.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from prometheus_client import CollectorRegistry

from svcclient import (
    BreakerPolicy,
    CircuitOpenError,
    PrometheusHooks,
    ResilientTransport,
    RetryPolicy,
    TracingHooks,
)
from svcclient._balancing.balancer import BalancingPolicy, LoadBalancer
from svcclient._balancing.outlier import OutlierPolicy
from svcclient._endpoint import Endpoint
from svcclient._observability.hooks import HookTable

URL = "http://user-service:8080"


def _in_flight(registry: CollectorRegistry, service: str = "user-service") -> float | None:
    return registry.get_sample_value("svcclient_requests_in_flight", {"target_service": service})


def _errors(registry: CollectorRegistry, error_type: str) -> float | None:
    labels = {"error_type": error_type, "target_service": "user-service"}
    return registry.get_sample_value("network_errors_total", labels)


def _client(handler, registry: CollectorRegistry, **kw: object) -> httpx.Client:
    hooks = [PrometheusHooks(registry=registry), TracingHooks()]
    transport = ResilientTransport(
        "user-service", httpx.MockTransport(handler), url=URL, hooks=hooks, **kw
    )
    return httpx.Client(base_url=URL, transport=transport)


def test_the_tally_is_prometheus_own_deque_and_its_start_is_not_called() -> None:
    """Built for a service, the table keeps Prometheus' in-flight deque: its start and a
    successful end are the tally's append and pop; any other end is its on_request_end."""
    registry = CollectorRegistry()
    prom, tracing = PrometheusHooks(registry=registry), TracingHooks()
    table = HookTable([prom, tracing], "user-service")
    lean = table.variants[False]
    assert table.events.in_flight is prom._m.in_flight_child("user-service")
    assert lean.in_flight is table.events.in_flight  # one count, whichever a call uses
    assert lean.request_start is None  # Prometheus' start is the tally's append
    assert lean.request_succeeded is None  # and a success's end its pop
    assert lean.request_end == prom.on_request_end
    assert lean.attempt_end == prom.on_attempt_end
    # Without a service (the instrumented client's table) nothing changes.
    plain = HookTable([prom, tracing])
    assert plain.events.in_flight is None
    assert plain.variants[False].request_start == prom.on_request_start


def test_a_subclass_that_overrides_an_event_keeps_its_own_methods() -> None:
    seen: list[str] = []

    class Counting(PrometheusHooks):
        def on_request_start(self, call) -> None:  # type: ignore[no-untyped-def]
            seen.append(call.service)
            super().on_request_start(call)

        def on_attempt_end(self, attempt) -> None:  # type: ignore[no-untyped-def]
            seen.append("attempt")
            super().on_attempt_end(attempt)

    registry = CollectorRegistry()
    table = HookTable([Counting(registry=registry), TracingHooks()], "user-service")
    assert table.events.in_flight is None
    assert table.variants[False].request_start is not None
    transport = ResilientTransport(
        "user-service",
        httpx.MockTransport(lambda r: httpx.Response(200)),
        url=URL,
        hooks=[Counting(registry=registry), TracingHooks()],
    )
    with httpx.Client(base_url=URL, transport=transport) as plain:
        plain.get("/a")
    assert seen == ["user-service", "attempt"]
    assert _in_flight(registry) == 0


def test_in_flight_is_one_during_a_call_and_zero_after_every_way_out() -> None:
    registry = CollectorRegistry()
    during: list[float | None] = []
    mode = {"answer": "ok"}

    def handler(request: httpx.Request) -> httpx.Response:
        during.append(_in_flight(registry))
        if mode["answer"] == "refuse":
            raise httpx.ConnectError("refused", request=request)
        if mode["answer"] == "boom":
            raise KeyboardInterrupt  # not an Exception: the call is cancelled
        return httpx.Response(503 if mode["answer"] == "503" else 200)

    retry = RetryPolicy(attempts=2, backoff_base=0.001, backoff_cap=0.001)
    with _client(handler, registry, retry=retry, breaker=None) as client:
        assert client.get("/ok").status_code == 200
        assert _in_flight(registry) == 0
        mode["answer"] = "503"
        assert client.get("/busy").status_code == 503  # a final failure status
        assert _in_flight(registry) == 0
        mode["answer"] = "refuse"
        sent = len(during)
        with pytest.raises(httpx.ConnectError):
            client.get("/down")
        assert _in_flight(registry) == 0
        assert _errors(registry, "connect_refused") == len(during) - sent  # once per attempt
        mode["answer"] = "boom"
        with pytest.raises(KeyboardInterrupt):
            client.get("/cancelled")
        assert _in_flight(registry) == 0
    assert during and all(value == 1.0 for value in during)


def test_a_call_level_error_is_counted_once_through_the_failed_end() -> None:
    registry = CollectorRegistry()
    policy = BreakerPolicy(volume_threshold=1, error_threshold_percentage=50.0)
    with _client(
        lambda r: httpx.Response(500), registry, breaker=policy, retry=RetryPolicy(attempts=1)
    ) as client:
        assert client.get("/x").status_code == 500
        with pytest.raises(CircuitOpenError):
            client.get("/x")  # an open breaker is not a network error
        assert _in_flight(registry) == 0
    assert _errors(registry, "circuit_open") is None


def test_a_passthrough_request_still_goes_through_prometheus_events() -> None:
    registry = CollectorRegistry()
    during: list[float | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        during.append(_in_flight(registry, "other-host"))
        return httpx.Response(200)

    with _client(handler, registry) as client:
        assert client.get("http://other-host/x").status_code == 200
    assert during == [1.0]
    assert _in_flight(registry, "other-host") == 0


def test_an_incoming_trace_still_gets_its_exemplar() -> None:
    """With a trace context, tracing does not sit the call out: the full table, whose
    on_attempt_end looks for the trace id."""
    from opentelemetry import context, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    registry = CollectorRegistry()
    span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1)))
    token = context.attach(trace.set_span_in_context(span))
    try:
        with _client(lambda r: httpx.Response(200), registry) as client:
            client.get("/x")
    finally:
        context.detach(token)
    from prometheus_client.openmetrics.exposition import generate_latest

    assert f"{0xABC:032x}" in generate_latest(registry).decode()


def test_single_endpoint_shortcut_follows_the_endpoint_set() -> None:
    a, b = Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)
    balancer = LoadBalancer(BalancingPolicy(), OutlierPolicy(enabled=False))
    balancer.set_endpoints([a])
    assert balancer.single is not None and balancer.single[0] is a
    endpoint, in_flight = balancer.single
    in_flight.append(None)  # what the pipeline does instead of start()
    balancer.set_endpoints([a, b])
    assert balancer.single is None  # two to choose from: start() picks
    balancer.on_end(a, 0.01, False)  # the attempt started through the shortcut ends
    picks = {balancer.start().key for _ in range(20)}
    assert picks == {a.key, b.key}
    for key in picks:  # each pick counted one in flight; end them
        balancer.on_end(a if key == a.key else b, 0.01, False)
    balancer.set_endpoints([b])
    assert balancer.single is not None and balancer.single[0] is b
    assert balancer.single[1] is balancer._stats[b.key].inflight
    rr = LoadBalancer(BalancingPolicy("round_robin"), OutlierPolicy(enabled=False))
    rr.set_endpoints([a])
    assert rr.single is None  # only least loaded takes the shortcut


def test_single_endpoint_counts_in_flight_through_the_pipeline() -> None:
    seen: list[int] = []
    transport: ResilientTransport

    def handler(request: httpx.Request) -> httpx.Response:
        balancer = transport.runtime.balancer
        seen.append(sum(len(st.inflight) for st in balancer._stats.values()))
        return httpx.Response(200)

    transport = ResilientTransport("user-service", httpx.MockTransport(handler), url=URL, hooks=[])
    with httpx.Client(base_url=URL, transport=transport) as client:
        for _ in range(3):
            client.get("/x")
    balancer = transport.runtime.balancer
    assert balancer.single is not None
    assert seen == [1, 1, 1]
    assert sum(len(st.inflight) for st in balancer._stats.values()) == 0


def test_a_queued_caller_gets_the_slot_the_inlined_release_gives_back() -> None:
    """Sync driver: a caller queued for the only slot gets it when the call ends."""
    from svcclient import BulkheadPolicy

    inside = threading.Event()
    go_on = threading.Event()
    order: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        order.append(request.url.path)
        if request.url.path == "/first":
            inside.set()
            go_on.wait(10)
        return httpx.Response(200)

    policy = BulkheadPolicy(max_concurrent=1, max_waiting=1, wait_timeout=10.0)
    transport = ResilientTransport(
        "user-service", httpx.MockTransport(handler), url=URL, hooks=[], bulkhead=policy
    )
    with httpx.Client(base_url=URL, transport=transport) as client:
        first = threading.Thread(target=client.get, args=("/first",))
        first.start()
        assert inside.wait(10)
        result: list[int] = []
        second = threading.Thread(target=lambda: result.append(client.get("/second").status_code))
        second.start()
        bulkhead = transport.runtime.bulkhead
        assert bulkhead is not None
        for _ in range(1000):
            if bulkhead.waiting:
                break
            threading.Event().wait(0.005)
        assert bulkhead.waiting == 1
        go_on.set()
        first.join(10)
        second.join(10)
        assert result == [200]
        assert order == ["/first", "/second"]
        assert bulkhead.in_flight == 0 and bulkhead.waiting == 0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_async_in_flight_is_one_during_a_call_and_zero_after() -> None:
    """The async driver's calls (plain and hedged) add to the tally once and take it
    back once: on success, on a final failure status, on a refused connection."""
    import anyio

    from svcclient import AsyncResilientTransport, HedgePolicy

    registry = CollectorRegistry()
    during: list[float | None] = []
    mode = {"answer": "ok"}

    async def handler(request: httpx.Request) -> httpx.Response:
        during.append(_in_flight(registry))
        if mode["answer"] == "refuse":
            raise httpx.ConnectError("refused", request=request)
        if mode["answer"] == "slow-first" and request.url.path == "/h" and len(during) % 2:
            await anyio.sleep(0.5)  # the hedge (sent meanwhile) answers first
        return httpx.Response(503 if mode["answer"] == "503" else 200)

    for hedge in (None, HedgePolicy(delay=0.02, min_delay=0.01)):
        hooks = [PrometheusHooks(registry=registry), TracingHooks()]
        transport = AsyncResilientTransport(
            "user-service",
            httpx.MockTransport(handler),
            url=URL,
            hooks=hooks,
            retry=RetryPolicy(attempts=2, backoff_base=0.001, backoff_cap=0.001),
            breaker=None,
            hedge=hedge,
        )
        async with httpx.AsyncClient(base_url=URL, transport=transport) as client:
            mode["answer"] = "ok"
            assert (await client.get("/ok")).status_code == 200
            assert _in_flight(registry) == 0
            mode["answer"] = "slow-first"
            assert (await client.get("/h")).status_code == 200
            assert _in_flight(registry) == 0
            mode["answer"] = "503"
            assert (await client.get("/busy")).status_code == 503
            assert _in_flight(registry) == 0
            mode["answer"] = "refuse"
            with pytest.raises(httpx.ConnectError):
                await client.get("/down")
            assert _in_flight(registry) == 0
    assert during and all(value == 1.0 for value in during)
