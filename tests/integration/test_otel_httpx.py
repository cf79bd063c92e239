"""svcclient tracing beside opentelemetry-instrumentation-httpx, against a real server.

The server (a FaultServer on loopback) records the ``traceparent`` each attempt carried.
With the instrumentation active globally (``HTTPXClientInstrumentor().instrument()``
patches the httpx transports svcclient sends through) or on the client
(``instrument_client`` wraps the client's transport, i.e. the whole pipeline), there must
be exactly one CLIENT span per attempt, svcclient's, and it must be the server's parent.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from svcclient import (
    AsyncServiceClient,
    ResilientTransport,
    ServiceClient,
    TracingHooks,
    instrument,
)
from svcclient.testing._faultserver import Fault, FaultServer

pytestmark = pytest.mark.integration

MakeServer = Callable[..., FaultServer]
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
HTTPX_SCOPE = "opentelemetry.instrumentation.httpx"


@pytest.fixture
def traces() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@contextlib.contextmanager
def globally_instrumented(provider: TracerProvider) -> Iterator[None]:
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def _hex(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.span_id, "016x")


def _check_topology(server: FaultServer, exporter: InMemorySpanExporter, attempts: int) -> None:
    """One CLIENT span per attempt (svcclient's), each the parent the server saw."""
    spans = exporter.get_finished_spans()
    client = [s for s in spans if s.kind is SpanKind.CLIENT]
    scopes = {s.instrumentation_scope.name for s in client if s.instrumentation_scope}
    assert scopes == {"svcclient"}, [(s.name, s.instrumentation_scope) for s in spans]
    assert len(client) == attempts
    sent = []
    for request in server.requests:
        match = TRACEPARENT.match(request.headers.get("traceparent", ""))
        assert match, request.headers
        assert int(match.group(3), 16) & 1  # sampled
        sent.append(match.group(2))
    assert sent == [_hex(s) for s in sorted(client, key=lambda s: s.start_time or 0)]
    (call,) = [s for s in spans if s.kind is SpanKind.INTERNAL]
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in client)
    assert {s.context.trace_id for s in spans if s.context} == {call.context.trace_id}


def _sync_call(server: FaultServer, provider: TracerProvider, instrument_client: bool) -> None:
    server.push_faults([Fault.status(503)])  # two attempts
    with ServiceClient(
        "traced", url=server.url, hooks=[TracingHooks(tracer_provider=provider)]
    ) as client:
        if instrument_client:
            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
        assert client.get("/users/1").status_code == 200


def test_global_instrumentation_leaves_one_client_span_per_attempt(
    fault_server: MakeServer, traces: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """HTTPXClientInstrumentor().instrument(): no second span; the server's parent is ours."""
    provider, exporter = traces
    server = fault_server("127.0.0.2")
    with globally_instrumented(provider):
        _sync_call(server, provider, instrument_client=False)
    _check_topology(server, exporter, attempts=2)


def test_instrument_client_leaves_one_client_span_per_attempt(
    fault_server: MakeServer, traces: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """instrument_client(ServiceClient): its per-call span stands aside for ours."""
    provider, exporter = traces
    server = fault_server("127.0.0.2")
    _sync_call(server, provider, instrument_client=True)
    _check_topology(server, exporter, attempts=2)


def test_both_instrumentations_at_once(
    fault_server: MakeServer, traces: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Global and per-client instrumentation together still give one span per attempt."""
    provider, exporter = traces
    server = fault_server("127.0.0.2")
    with globally_instrumented(provider):
        _sync_call(server, provider, instrument_client=True)
    _check_topology(server, exporter, attempts=2)


@pytest.mark.anyio
@pytest.mark.parametrize("per_client", [False, True])
async def test_async_client_with_the_instrumentation(
    per_client: bool,
    fault_server: MakeServer,
    traces: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """AsyncServiceClient: one CLIENT span per attempt under both instrumentation styles."""
    provider, exporter = traces
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503)])
    with globally_instrumented(provider):
        async with AsyncServiceClient(
            "traced-async", url=server.url, hooks=[TracingHooks(tracer_provider=provider)]
        ) as client:
            if per_client:
                HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
            assert (await client.get("/users/1")).status_code == 200
    _check_topology(server, exporter, attempts=2)


def test_span_is_current_only_while_sending(
    fault_server: MakeServer, traces: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The instrumentation is suppressed for the attempt only: a later plain call is traced."""
    provider, exporter = traces
    server = fault_server("127.0.0.2")
    with globally_instrumented(provider):
        _sync_call(server, provider, instrument_client=False)
        with httpx.Client() as plain:
            plain.get(server.url + "/plain")
    httpx_spans = [
        s
        for s in exporter.get_finished_spans()
        if s.instrumentation_scope and s.instrumentation_scope.name == HTTPX_SCOPE
    ]
    assert len(httpx_spans) == 1  # the plain client's request, and only it
    assert server.requests[-1].headers["traceparent"].split("-")[2] == _hex(httpx_spans[0])


def test_without_svcclient_tracing_the_instrumentation_traces_each_attempt(
    fault_server: MakeServer, traces: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """hooks=[] (svcclient traces nothing): the global instrumentation's span per attempt."""
    provider, exporter = traces
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503)])
    with globally_instrumented(provider):
        with ServiceClient("untraced", url=server.url, hooks=[]) as client:
            assert client.get("/users/1").status_code == 200
    client_spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(client_spans) == 2
    assert {s.instrumentation_scope.name for s in client_spans if s.instrumentation_scope} == {
        HTTPX_SCOPE
    }
    parents = [r.headers["traceparent"].split("-")[2] for r in server.requests]
    assert sorted(parents) == sorted(_hex(s) for s in client_spans)


def test_plain_httpx_client_over_resilient_transport_with_global_instrumentation(
    fault_server: MakeServer, traces: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """httpx.Client(transport=ResilientTransport(...)) under instrument(): one span per attempt."""
    provider, exporter = traces
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503)])
    transport = ResilientTransport(
        "traced-plain", url=server.url, hooks=[TracingHooks(tracer_provider=provider)]
    )
    with globally_instrumented(provider):
        with httpx.Client(transport=transport, base_url=server.url) as client:
            assert client.get("/users/1").status_code == 200
    _check_topology(server, exporter, attempts=2)


def test_instrumented_plain_client_under_global_instrumentation(
    fault_server: MakeServer, traces: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """svcclient.instrument(httpx.Client()) under instrument(): one CLIENT span, ours."""
    provider, exporter = traces
    server = fault_server("127.0.0.2")
    with globally_instrumented(provider):
        client = instrument(httpx.Client(), hooks=[TracingHooks(tracer_provider=provider)])
        with client:
            assert client.get(server.url + "/users/1").status_code == 200
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "svcclient"
    assert server.requests[0].headers["traceparent"].split("-")[2] == _hex(span)
