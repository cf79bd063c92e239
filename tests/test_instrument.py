"""instrument(): metrics and spans for an existing httpx client."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from svcclient._exceptions import ConfigError
from svcclient._observability import instrument as _instrument
from svcclient._observability.hooks import AttemptInfo, CallInfo, Hooks
from svcclient._observability.instrument import (
    AsyncInstrumentedTransport,
    InstrumentedTransport,
    default_service_name,
    instrument,
)
from svcclient._observability.otel import TracingHooks
from svcclient._observability.prometheus import PrometheusHooks

DUR = "http_request_duration_seconds_count"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200 if request.url.path != "/missing" else 404)


def count(reg: CollectorRegistry, service: str, route: str, status: str = "200") -> float | None:
    labels = {"method": "GET", "route": route, "status_code": status, "target_service": service}
    return reg.get_sample_value(DUR, labels)


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("users.prod.svc.cluster.local", "users"),
        ("users.prod.svc", "users"),
        ("Users.Prod.SVC.cluster.local.", "users"),
        ("users", "users"),
        ("api.example.com", "api.example.com"),
        ("10.0.0.7", "10.0.0.7"),
        ("::1", "::1"),
        ("[::1]", "::1"),
    ],
)
def test_default_service_name(host: str, service: str) -> None:
    """Cluster names give their first label, bare names and other hosts stay, IPs stay."""
    assert default_service_name(host) == service


def test_sync_client_is_measured(registry: CollectorRegistry) -> None:
    """Requests through an instrumented client show up with service and route labels."""
    client = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        hooks=[PrometheusHooks(registry)],
    )
    with client:
        client.get("http://orders.shop.svc.cluster.local/orders/17?x=1")
        client.get("http://orders.shop.svc.cluster.local/orders/18")
        client.get("http://orders.shop.svc.cluster.local/missing")
        client.get("http://10.0.0.9:8080/items/5", extensions={"route": "/items/{item}"})
    assert count(registry, "orders", "/orders/{id}") == 2
    assert count(registry, "orders", "/missing", "404") == 1
    assert count(registry, "10.0.0.9", "/items/{item}") == 1
    assert (
        registry.get_sample_value("svcclient_requests_in_flight", {"target_service": "orders"}) == 0
    )


def test_mapping_and_function_namers(registry: CollectorRegistry) -> None:
    """A mapping names the hosts it knows (others use the default); a function names all."""
    mapped = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        service_name={"10.0.0.7": "billing"},
        hooks=[PrometheusHooks(registry)],
    )
    mapped.get("http://10.0.0.7/a")
    mapped.get("http://users.svc/a")
    assert count(registry, "billing", "/a") == 1
    assert count(registry, "users", "/a") == 1
    fn = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        service_name=lambda host: "edge-" + host,
        hooks=[PrometheusHooks(registry)],
    )
    fn.get("http://x.example/b")
    assert count(registry, "edge-x.example", "/b") == 1


def test_failing_namer_falls_back(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A service_name function that raises is logged and the default rule is used."""

    def broken(host: str) -> str:
        raise RuntimeError("boom")

    client = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        service_name=broken,
        hooks=[PrometheusHooks(registry)],
    )
    with caplog.at_level(logging.ERROR, logger="svcclient"):
        assert client.get("http://users.svc/a").status_code == 200
    assert count(registry, "users", "/a") == 1
    assert "service_name" in caplog.text


def test_transport_error_is_classified_and_reraised(registry: CollectorRegistry) -> None:
    """A connection error is counted by type and still reaches the caller."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client = instrument(
        httpx.Client(transport=httpx.MockTransport(refuse)), hooks=[PrometheusHooks(registry)]
    )
    with pytest.raises(httpx.ConnectError):
        client.get("http://users.svc/a")
    labels = {"error_type": "connect_refused", "target_service": "users"}
    assert registry.get_sample_value("network_errors_total", labels) == 1
    assert count(registry, "users", "/a", "0") == 1


@pytest.mark.anyio
async def test_async_client_is_measured(registry: CollectorRegistry) -> None:
    """An AsyncClient is instrumented the same way."""
    client = instrument(
        httpx.AsyncClient(transport=httpx.MockTransport(ok)), hooks=[PrometheusHooks(registry)]
    )
    async with client:
        await client.get("http://users.svc/users/1")
    assert isinstance(client._transport, AsyncInstrumentedTransport)
    assert count(registry, "users", "/users/{id}") == 1


@pytest.mark.anyio
async def test_async_error_is_classified(registry: CollectorRegistry) -> None:
    """An async read timeout is counted as read_timeout."""

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = instrument(
        httpx.AsyncClient(transport=httpx.MockTransport(slow)), hooks=[PrometheusHooks(registry)]
    )
    with pytest.raises(httpx.ReadTimeout):
        await client.get("http://users.svc/a")
    labels = {"error_type": "read_timeout", "target_service": "users"}
    assert registry.get_sample_value("network_errors_total", labels) == 1


def test_mounts_are_wrapped_and_reinstrumenting_replaces(registry: CollectorRegistry) -> None:
    """Mounted transports are wrapped; instrumenting twice does not count twice."""
    client = httpx.Client(
        transport=httpx.MockTransport(ok),
        mounts={"http://special.svc": httpx.MockTransport(ok)},
    )
    instrument(client, hooks=[PrometheusHooks(registry)])
    instrument(client, hooks=[PrometheusHooks(registry)])
    assert all(
        isinstance(t, InstrumentedTransport) and not isinstance(t.transport, InstrumentedTransport)
        for t in client._mounts.values()
    )
    client.get("http://special.svc/a")
    client.get("http://users.svc/a")
    assert count(registry, "special", "/a") == 1
    assert count(registry, "users", "/a") == 1


def test_hook_failure_does_not_break_request(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged; the request and the other hooks go on."""

    class Broken(Hooks):
        def on_attempt_end(self, attempt: AttemptInfo) -> None:
            raise RuntimeError("observer bug")

    client = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        hooks=[Broken(), PrometheusHooks(registry)],
    )
    with caplog.at_level(logging.ERROR, logger="svcclient"):
        assert client.get("http://users.svc/a").status_code == 200
    assert "observer bug" in caplog.text
    assert count(registry, "users", "/a") == 1


def test_hooks_see_one_call_one_attempt() -> None:
    """Each request is one call with one attempt (number 0), timed and finished."""
    seen: list[tuple[str, object]] = []

    class Recorder(Hooks):
        def on_request_start(self, call: CallInfo) -> None:
            seen.append(("start", call.service))

        def on_attempt_end(self, attempt: AttemptInfo) -> None:
            seen.append(("attempt", (attempt.number, attempt.status_code)))
            assert attempt.duration >= 0

        def on_request_end(self, call: CallInfo) -> None:
            seen.append(("end", (call.attempts, call.status_code, call.route)))

    client = instrument(httpx.Client(transport=httpx.MockTransport(ok)), hooks=[Recorder()])
    client.get("http://users.svc/users/9")
    assert seen == [
        ("start", "users"),
        ("attempt", (0, 200)),
        ("end", (1, 200, "/users/{id}")),
    ]


def test_service_label_is_capped(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap of distinct services, new hosts are reported as 'other'."""
    monkeypatch.setattr(_instrument, "_MAX_SERVICES", 2)
    client = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)), hooks=[PrometheusHooks(registry)]
    )
    for host in ("a.svc", "b.svc", "c.svc", "a.svc"):
        client.get(f"http://{host}/x")
    assert count(registry, "a", "/x") == 2
    assert count(registry, "b", "/x") == 1
    assert count(registry, "other", "/x") == 1


def test_default_hooks_use_given_registry(registry: CollectorRegistry) -> None:
    """Without hooks, Prometheus (on the given registry) and tracing are installed."""
    client = instrument(httpx.Client(transport=httpx.MockTransport(ok)), registry=registry)
    assert isinstance(client._transport, InstrumentedTransport)
    kinds = {type(h) for h in client._transport._observer.hooks}
    assert kinds == {PrometheusHooks, TracingHooks}
    client.get("http://users.svc/a")
    assert count(registry, "users", "/a") == 1


def test_close_reaches_wrapped_transport() -> None:
    """Closing the client closes the transport it wrapped."""
    closed = []

    class Closing(httpx.MockTransport):
        def close(self) -> None:
            closed.append(True)

    client = instrument(httpx.Client(transport=Closing(ok)), hooks=[])
    client.close()
    assert closed == [True]


class _Recorder(http.server.BaseHTTPRequestHandler):
    headers_seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        type(self).headers_seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.headers_seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.mark.integration
def test_real_server_sees_traceparent_of_client_span(server: str) -> None:
    """A real loopback server receives the traceparent of the exported CLIENT span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    client = instrument(
        httpx.Client(timeout=5),
        hooks=[TracingHooks(provider), PrometheusHooks(registry)],
    )
    with client:
        assert client.get(f"{server}/users/5?token=x").status_code == 200
    (headers,) = _Recorder.headers_seen
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert span.context is not None
    _, trace_id, span_id, _ = headers["traceparent"].split("-")
    assert (trace_id, span_id) == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    attrs = span.attributes or {}
    assert attrs["url.full"] == f"{server}/users/5?token=REDACTED"
    assert attrs["server.address"] == "127.0.0.1"
    labels = {"method": "GET", "route": "/users/{id}", "status_code": "200"}
    assert registry.get_sample_value(DUR, {**labels, "target_service": "127.0.0.1"}) == 1
    provider.shutdown()


def test_string_namer_names_every_request(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """service_name="billing" labels every request billing, with nothing logged."""
    client = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        service_name="billing",
        hooks=[PrometheusHooks(registry)],
    )
    with caplog.at_level(logging.DEBUG, logger="svcclient"):
        client.get("http://10.0.0.7/a")
        client.get("http://users.svc/a")
    assert count(registry, "billing", "/a") == 2
    assert caplog.records == []


@pytest.mark.parametrize("bad", [42, b"billing", ["billing"]])
def test_bad_namer_is_refused_at_the_call(bad: object) -> None:
    """A service_name that is not a str, mapping or callable is a TypeError at instrument()."""
    with pytest.raises(TypeError, match="service_name"):
        instrument(httpx.Client(transport=httpx.MockTransport(ok)), service_name=bad, hooks=[])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"10.0.0.7": 42}, {7: "billing"}, {"10.0.0.7": None}])
def test_mapping_of_other_types_is_refused_at_the_call(bad: object) -> None:
    """A mapping whose keys or values are not strings is a TypeError naming service_name."""
    with pytest.raises(TypeError, match=r"service_name.*str hosts to str names"):
        instrument(httpx.Client(transport=httpx.MockTransport(ok)), service_name=bad, hooks=[])  # type: ignore[arg-type]


def test_mapping_with_an_empty_name_is_refused_at_the_call() -> None:
    """An empty name in the mapping is a ConfigError naming the host's entry."""
    with pytest.raises(ConfigError, match="service_name"):
        instrument(
            httpx.Client(transport=httpx.MockTransport(ok)),
            service_name={"10.0.0.7": " "},
            hooks=[],
        )


def test_mapping_matches_hosts_in_lower_case_and_is_copied(registry: CollectorRegistry) -> None:
    """Mapping keys match httpx's lower-case hosts; changing the mapping later has no effect."""
    names = {"Billing.Internal": "billing"}
    client = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        service_name=names,
        hooks=[PrometheusHooks(registry)],
    )
    names["users.svc"] = "changed"
    client.get("http://BILLING.internal/a")
    client.get("http://users.svc/a")
    assert count(registry, "billing", "/a") == 1
    assert count(registry, "users", "/a") == 1


def test_function_returning_none_uses_the_default_rule(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A function that answers None for a host leaves that host to default_service_name,
    and is asked once per host."""
    asked: list[str] = []

    def namer(host: str) -> str | None:
        asked.append(host)
        return "billing" if host == "10.0.0.7" else None

    client = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        service_name=namer,
        hooks=[PrometheusHooks(registry)],
    )
    with caplog.at_level(logging.DEBUG, logger="svcclient"):
        for _ in range(2):
            client.get("http://10.0.0.7/a")
            client.get("http://users.prod.svc.cluster.local/a")
    assert count(registry, "billing", "/a") == 2
    assert count(registry, "users", "/a") == 2
    assert asked == ["10.0.0.7", "users.prod.svc.cluster.local"]
    assert caplog.records == []


def test_function_returning_a_non_string_is_logged_and_ignored(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A name that is not a str never becomes a label: logged, and the default rule names it."""
    client = instrument(
        httpx.Client(transport=httpx.MockTransport(ok)),
        service_name=lambda host: 42,  # type: ignore[arg-type,return-value]
        hooks=[PrometheusHooks(registry)],
    )
    with caplog.at_level(logging.ERROR, logger="svcclient"):
        assert client.get("http://users.svc/a").status_code == 200
    assert count(registry, "users", "/a") == 1
    assert "service_name" in caplog.text and "int" in caplog.text


def test_default_hooks_follow_each_registry() -> None:
    """Fresh registries (which may reuse a freed id) each get hooks that record into them."""
    from svcclient._observability.defaults import default_hooks

    missing = 0
    for _ in range(300):
        reg = CollectorRegistry()
        client = instrument(
            httpx.Client(transport=httpx.MockTransport(ok)), hooks=default_hooks(reg)
        )
        client.get("http://users.svc/a")
        if count(reg, "users", "/a") != 1:
            missing += 1
        del client, reg
    assert missing == 0


def test_readme_service_name_snippet_runs() -> None:
    """The README's three service_name forms are accepted as written."""
    import re
    from pathlib import Path

    import svcclient

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    block = next(b for b in blocks if "instrument(client, service_name=" in b)
    client = httpx.Client(transport=httpx.MockTransport(ok))
    exec(compile(block, "README.md", "exec"), {"svcclient": svcclient, "client": client})  # noqa: S102 - our own README
    assert client.get("http://a.cdn.net/x").status_code == 200
