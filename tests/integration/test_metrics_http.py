"""Prometheus metrics and W3C trace propagation after real calls to a local server.

Each test uses its own ``CollectorRegistry`` (or its own OpenTelemetry SDK
``TracerProvider`` with an in-memory exporter), so it sees only its own calls.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from svcclient import AsyncServiceClient, DiscoveryError, ServiceClient, TracingHooks
from svcclient.testing import LocalDns
from svcclient.testing._faultserver import Fault, FaultServer

pytestmark = pytest.mark.integration

MakeServer = Callable[..., FaultServer]
LeakCheck = Callable[..., contextlib.AbstractContextManager[None]]
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def _duration_count(registry: CollectorRegistry, **labels: str) -> float | None:
    return registry.get_sample_value("http_request_duration_seconds_count", labels)


def test_duration_histogram_labels_after_real_calls(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """http_request_duration_seconds is labelled method/route/status_code/target_service."""
    server = fault_server("127.0.0.2")
    registry = CollectorRegistry()
    with no_fd_leak():
        with ServiceClient("user-service", url=server.url, registry=registry) as client:
            for user in (1, 2, 3):
                client.get(f"/users/{user}", extensions={"route": "/users/{id}"})
            server.push_faults([Fault.ok(201)])
            client.post("/orders", json={}, extensions={"route": "/orders"})
    get_200 = {
        "method": "GET",
        "route": "/users/{id}",
        "status_code": "200",
        "target_service": "user-service",
    }
    assert _duration_count(registry, **get_200) == 3
    duration_sum = registry.get_sample_value("http_request_duration_seconds_sum", get_200)
    assert duration_sum is not None and 0 < duration_sum < 3.0
    assert (
        _duration_count(
            registry,
            method="POST",
            route="/orders",
            status_code="201",
            target_service="user-service",
        )
        == 1
    )


def test_refused_connections_count_network_errors_per_attempt(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """A refused pod: network_errors_total{error_type="connect_refused"} counts every attempt."""
    server = fault_server("127.0.0.2")
    server.refuse()
    registry = CollectorRegistry()
    with no_fd_leak():
        with ServiceClient("dead-service", url=server.url, registry=registry) as client:
            with pytest.raises(httpx.ConnectError):
                client.get("/x", extensions={"route": "/x"})
    labels = {"error_type": "connect_refused", "target_service": "dead-service"}
    # 3 attempts plus one requeue (one endpoint: the requeue cap is 1)
    assert registry.get_sample_value("network_errors_total", labels) == 4
    no_response = {
        "method": "GET",
        "route": "/x",
        "status_code": "0",
        "target_service": "dead-service",
    }
    assert _duration_count(registry, **no_response) == 4


def test_retried_503_shows_in_duration_and_retry_counters(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """503 then 200: one 503 and one 200 attempt observed, one retry counted with its reason."""
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503)])
    registry = CollectorRegistry()
    with no_fd_leak():
        with ServiceClient("flaky-service", url=server.url, registry=registry) as client:
            assert client.get("/x", extensions={"route": "/x"}).status_code == 200
    base = {"method": "GET", "route": "/x", "target_service": "flaky-service"}
    assert _duration_count(registry, **base, status_code="503") == 1
    assert _duration_count(registry, **base, status_code="200") == 1
    retries = registry.get_sample_value(
        "svcclient_retries_total", {"target_service": "flaky-service", "reason": "status_503"}
    )
    assert retries == 1


def _client_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]


def test_traceparent_reaches_the_server_and_matches_the_attempt_span(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """With an SDK TracerProvider, each attempt sends traceparent = its own CLIENT span."""
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503)])  # two attempts: two spans, two headers
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with no_fd_leak():
        with ServiceClient(
            "traced-service",
            url=server.url,
            hooks=[TracingHooks(tracer_provider=provider)],
        ) as client:
            assert client.get("/users/9", extensions={"route": "/users/{id}"}).status_code == 200
    provider.shutdown()
    headers = [r.headers.get("traceparent", "") for r in server.requests]
    parsed = [TRACEPARENT.match(h) for h in headers]
    assert all(parsed), headers
    sent = [(m.group(1), m.group(2)) for m in parsed if m]
    assert all(int(m.group(3), 16) & 1 for m in parsed if m)  # the "sampled" flag
    spans = _client_spans(exporter)
    assert len(spans) == 2
    recorded = sorted(
        (format(s.context.trace_id, "032x"), format(s.context.span_id, "016x"))
        for s in spans
        if s.context is not None
    )
    assert sorted(sent) == recorded
    assert len({trace for trace, _ in sent}) == 1  # both attempts belong to one trace
    assert {s.name for s in spans} == {"GET /users/{id}"}


def _dns_failures(registry: CollectorRegistry, service: str) -> float | None:
    labels = {"error_type": "dns_failure", "target_service": service}
    return registry.get_sample_value("network_errors_total", labels)


def test_every_dns_failure_is_counted(local_dns: LocalDns) -> None:
    """Five calls to an NXDOMAIN name: five dns_failure errors, the first one included."""
    registry = CollectorRegistry()
    with ServiceClient(
        "ghost",
        url="http://ghost.svc.test:8080",
        resolve="dns",
        dns_nameservers=[local_dns.nameserver],
        registry=registry,
    ) as client:
        for _ in range(5):
            with pytest.raises(DiscoveryError):
                client.get("/x")
    assert _dns_failures(registry, "ghost") == 5


@pytest.mark.anyio
async def test_every_dns_failure_is_counted_async(local_dns: LocalDns) -> None:
    """The async client counts every DNS failure too, the first one included."""
    registry = CollectorRegistry()
    async with AsyncServiceClient(
        "ghost-async",
        url="http://ghost-async.svc.test:8080",
        resolve="dns",
        dns_nameservers=[local_dns.nameserver],
        registry=registry,
    ) as client:
        for _ in range(5):
            with pytest.raises(DiscoveryError):
                await client.get("/x")
    assert _dns_failures(registry, "ghost-async") == 5


def test_first_dns_failure_goes_to_the_fallback(local_dns: LocalDns) -> None:
    """The first call of a client whose name does not resolve gets the fallback as well."""
    causes: list[str] = []

    def fallback(request: httpx.Request, cause: BaseException) -> httpx.Response:
        causes.append(type(cause).__name__)
        return httpx.Response(200, json={"fallback": True})

    with ServiceClient(
        "ghost-fb",
        url="http://ghost-fb.svc.test:8080",
        resolve="dns",
        dns_nameservers=[local_dns.nameserver],
        fallback=fallback,
        hooks=[],
    ) as client:
        assert client.get("/x").json() == {"fallback": True}
        assert client.get("/x").json() == {"fallback": True}
    assert causes == ["DiscoveryError", "DiscoveryError"]
