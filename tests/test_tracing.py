"""TracingHooks: spans, attributes, redaction, propagation, OTel metrics, the no-SDK path."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    NoOpTracerProvider,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
)

from svcclient._endpoint import Endpoint
from svcclient._observability.hooks import AttemptInfo, CallInfo, Hooks, HookTable
from svcclient._observability.otel import TRACE_ID_STATE_KEY, TracingHooks, redact_url

URL = "http://bob:s3cret@users.prod.svc.cluster.local:8080/users/42?token=abc&page=2"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


def make_call(method: str = "GET", url: str = URL, route: str = "/users/{id}") -> CallInfo:
    return CallInfo("users", method, route, httpx.Request(method, url), time.perf_counter())


def run(
    hooks: TracingHooks,
    call: CallInfo,
    outcomes: list[tuple[int | None, str | None]],
    endpoint: Endpoint | None = None,
) -> list[AttemptInfo]:
    """Drive the hooks like the pipeline: start, attempts (with retries), end."""
    attempts = []
    hooks.on_request_start(call)
    for number, (status, error) in enumerate(outcomes):
        if number:
            hooks.on_retry(call, 0.0, "retry")
        a = AttemptInfo(call, number, endpoint, call.request, time.perf_counter())
        hooks.on_attempt_start(a)
        a.status_code, a.error_type, a.duration = status, error, 0.01
        hooks.on_attempt_end(a)
        attempts.append(a)
    call.attempts = len(outcomes)
    if outcomes:
        call.status_code, call.error_type = outcomes[-1]
    hooks.on_request_end(call)
    return attempts


def spans(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {"client": [], "internal": []}
    for s in exporter.get_finished_spans():
        out["client" if s.kind is SpanKind.CLIENT else "internal"].append(s)
    return out


def test_attempt_span_named_and_attributed(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """One CLIENT span per attempt, named '{method} {route}', with the semconv attributes."""
    run(TracingHooks(provider), make_call(), [(200, None)], Endpoint("10.1.2.3", 8080))
    (span,) = spans(exporter)["client"]
    assert span.name == "GET /users/{id}"
    attrs = dict(span.attributes or {})
    assert attrs["http.request.method"] == "GET"
    assert attrs["server.address"] == "users.prod.svc.cluster.local"
    assert attrs["server.port"] == 8080
    assert attrs["url.full"] == (
        "http://REDACTED:REDACTED@users.prod.svc.cluster.local:8080/users/42"
        "?token=REDACTED&page=REDACTED"
    )
    assert attrs["url.template"] == "/users/{id}"
    assert attrs["service.peer.name"] == "users"
    assert attrs["network.peer.address"] == "10.1.2.3"
    assert attrs["http.response.status_code"] == 200
    assert "http.request.resend_count" not in attrs
    assert "error.type" not in attrs
    assert span.status.status_code is StatusCode.UNSET


def test_default_port_from_scheme(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """server.port is the scheme's default when the URL has none."""
    run(TracingHooks(provider), make_call(url="https://api.example.com/x"), [(200, None)])
    (span,) = spans(exporter)["client"]
    assert (span.attributes or {})["server.port"] == 443


def test_retries_nest_under_call_span_with_resend_count(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Retried attempts are children of one INTERNAL call span and carry resend_count."""
    run(TracingHooks(provider), make_call(), [(503, None), (None, "reset"), (200, None)])
    got = spans(exporter)
    (parent,) = got["internal"]
    assert parent.name == "GET /users/{id}"
    assert len(got["client"]) == 3
    assert parent.context is not None
    for number, span in enumerate(got["client"]):
        assert span.parent is not None
        assert span.parent.span_id == parent.context.span_id
        assert (span.attributes or {}).get("http.request.resend_count") == (number or None)
    assert (parent.attributes or {})["svcclient.attempts"] == 3
    assert [e.name for e in parent.events] == ["retry", "retry"]
    assert parent.status.status_code is StatusCode.UNSET


def test_error_statuses(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """Transport errors, 5xx and 4xx set ERROR and error.type (client-span rule); 2xx not."""
    hooks = TracingHooks(provider, call_span=False)
    for outcome in [(None, "read_timeout"), (503, None), (404, None), (204, None)]:
        run(hooks, make_call(), [outcome])
    got = [(s.attributes or {}).get("error.type") for s in spans(exporter)["client"]]
    assert got == ["read_timeout", "503", "404", None]
    codes = [s.status.status_code for s in spans(exporter)["client"]]
    assert codes == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]


def test_rejected_call_records_circuit_open(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A call the breaker rejected still leaves a call span with error.type circuit_open."""
    hooks = TracingHooks(provider)
    call = make_call()
    hooks.on_request_start(call)
    hooks.on_breaker_reject("users")
    call.error_type = "circuit_open"
    hooks.on_request_end(call)
    got = spans(exporter)
    assert got["client"] == []
    (span,) = got["internal"]
    assert (span.attributes or {})["error.type"] == "circuit_open"
    assert span.status.status_code is StatusCode.ERROR


def test_call_span_off_parents_attempts_to_caller(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """With call_span=False the attempt spans are children of the caller's span."""
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        run(TracingHooks(provider, call_span=False), make_call(), [(200, None)])
    got = spans(exporter)
    assert [s.name for s in got["internal"]] == ["caller"]
    (attempt_span,) = got["client"]
    assert attempt_span.parent is not None
    assert attempt_span.parent.span_id == caller.get_span_context().span_id


def test_unknown_method(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    """A non-standard method is _OTHER with the original kept, and the span name says HTTP."""
    run(TracingHooks(provider, call_span=False), make_call(method="PURGE"), [(200, None)])
    (span,) = spans(exporter)["client"]
    assert span.name == "HTTP /users/{id}"
    attrs = span.attributes or {}
    assert attrs["http.request.method"] == "_OTHER"
    assert attrs["http.request.method_original"] == "PURGE"


def test_other_route_gives_method_only_name(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """When the route cap folded the route into 'other', the span is named by method alone."""
    run(TracingHooks(provider, call_span=False), make_call(route="other"), [(200, None)])
    assert [s.name for s in spans(exporter)["client"]] == ["GET"]


def test_traceparent_injected_for_each_attempt(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """The outgoing headers carry the W3C traceparent of the attempt's own span."""
    hooks = TracingHooks(provider)
    call = make_call()
    seen = []
    hooks.on_request_start(call)
    for number in range(2):
        a = AttemptInfo(call, number, None, call.request, time.perf_counter())
        hooks.on_attempt_start(a)
        seen.append(call.request.headers["traceparent"])
        a.status_code = 200
        hooks.on_attempt_end(a)
    hooks.on_request_end(call)
    client_spans = spans(exporter)["client"]
    expected = [
        f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}"
        for s in client_spans
        if s.context is not None
    ]
    assert [h.rsplit("-", 1)[0] for h in seen] == expected
    # Bit 0 of the flags is "sampled" (newer SDKs also set the W3C "random" bit).
    assert all(int(h.rsplit("-", 1)[1], 16) & 1 for h in seen)
    first = client_spans[0].context
    assert first is not None
    assert call.state[TRACE_ID_STATE_KEY] == f"{first.trace_id:032x}"


def test_no_propagation_when_disabled(provider: TracerProvider) -> None:
    """propagate=False records spans but leaves the headers alone."""
    call = make_call()
    run(TracingHooks(provider, propagate=False), call, [(200, None)])
    assert "traceparent" not in call.request.headers


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://u:p@h.example/a?x=1#f", "https://REDACTED:REDACTED@h.example/a?x=REDACTED"),
        ("https://token@h.example/a", "https://REDACTED@h.example/a"),
        ("http://h.example:81/a/b", "http://h.example:81/a/b"),
        ("http://h.example?flag&k=v", "http://h.example?flag&k=REDACTED"),
        ("http://h.example/a?", "http://h.example/a"),
        ("http://[::1]:8080/p?q=1", "http://[::1]:8080/p?q=REDACTED"),
        ("/relative/path?sig=xyz", "/relative/path?sig=REDACTED"),
        ("http://h.example/a@b", "http://h.example/a@b"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    """Credentials and query values are replaced, fragments dropped, the rest kept."""
    assert redact_url(url) == redacted


def test_redact_httpx_url() -> None:
    """redact_url accepts httpx.URL as well as text."""
    assert redact_url(httpx.URL("https://a:b@h.example/p?k=v")) == (
        "https://REDACTED:REDACTED@h.example/p?k=REDACTED"
    )


@pytest.fixture
def no_global_sdk() -> None:
    if getattr(otel_trace, "_TRACER_PROVIDER", None) is not None:
        pytest.skip("a global tracer provider is set in this process")


@pytest.mark.usefixtures("no_global_sdk")
def test_no_sdk_creates_nothing_and_injects_nothing() -> None:
    """With only the API (no provider), no span is made and no header is added."""
    hooks = TracingHooks()
    call = make_call()
    attempts = run(hooks, call, [(503, None), (200, None)])
    assert all(a.state is None for a in attempts)
    assert call.state == {}
    assert "traceparent" not in call.request.headers


@pytest.mark.usefixtures("no_global_sdk")
def test_no_sdk_still_propagates_incoming_trace() -> None:
    """Without an SDK an incoming trace in the current context is still propagated."""
    incoming = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    ctx = otel_trace.set_span_in_context(NonRecordingSpan(incoming))
    token = otel_context.attach(ctx)
    try:
        call = make_call()
        run(TracingHooks(), call, [(200, None)])
    finally:
        otel_context.detach(token)
    assert call.request.headers["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-01"


@pytest.mark.usefixtures("no_global_sdk")
def test_global_provider_set_later_is_picked_up(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hooks made before the app set its global provider start tracing once it is set."""
    hooks = TracingHooks()
    run(hooks, make_call(), [(200, None)])
    assert exporter.get_finished_spans() == ()
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    run(hooks, make_call(), [(200, None)])
    assert len(spans(exporter)["client"]) == 1


def test_explicit_noop_provider_records_nothing() -> None:
    """An explicit NoOpTracerProvider takes the no-span path."""
    call = make_call()
    attempts = run(TracingHooks(NoOpTracerProvider()), call, [(200, None)])
    assert attempts[0].state is None
    assert TRACE_ID_STATE_KEY not in call.state


def test_unsampled_trace_has_no_trace_id_for_exemplars(exporter: InMemorySpanExporter) -> None:
    """A span dropped by the sampler is not offered as an exemplar trace id."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    tp = TracerProvider(sampler=ALWAYS_OFF)
    call = make_call()
    run(TracingHooks(tp), call, [(200, None)])
    assert TRACE_ID_STATE_KEY not in call.state
    assert "traceparent" in call.request.headers  # still propagated, flagged unsampled
    assert int(call.request.headers["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0


def test_otel_duration_metric() -> None:
    """http.client.request.duration is recorded per attempt with semconv attributes."""
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    hooks = TracingHooks(NoOpTracerProvider(), meter_provider=meters)
    run(hooks, make_call(), [(None, "connect_refused"), (200, None)])
    data = reader.get_metrics_data()
    assert data is not None
    metrics = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    (metric,) = [m for m in metrics if m.name == "http.client.request.duration"]
    assert metric.unit == "s"
    points = {
        (p.attributes or {}).get("error.type")
        or (p.attributes or {})["http.response.status_code"]: p
        for p in metric.data.data_points
    }
    assert set(points) == {"connect_refused", 200}
    ok = dict(points[200].attributes or {})
    assert ok == {
        "http.request.method": "GET",
        "server.address": "users.prod.svc.cluster.local",
        "server.port": 8080,
        "url.scheme": "http",
        "url.template": "/users/{id}",
        "http.response.status_code": 200,
    }
    point = points[200]
    assert isinstance(point, HistogramDataPoint)
    assert point.count == 1
    meters.shutdown()


@pytest.mark.usefixtures("no_global_sdk")
def test_no_meter_provider_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no global MeterProvider the histogram is not even called."""
    hooks = TracingHooks()
    calls = []
    monkeypatch.setattr(hooks._histogram, "record", lambda *a, **k: calls.append(a))
    run(hooks, make_call(), [(200, None)])
    assert calls == []


def test_attempt_span_is_current_and_http_instrumentation_suppressed_while_sending(
    provider: TracerProvider,
) -> None:
    """enter() makes the attempt's span current and sets the suppress-HTTP key; undo clears."""
    hooks = TracingHooks(provider)
    call = make_call()
    hooks.on_request_start(call)
    a = AttemptInfo(call, 0, None, call.request, time.perf_counter())
    hooks.on_attempt_start(a)
    assert a.enter is not None
    key = otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY
    assert not otel_context.get_value(key)
    undo = a.enter()
    try:
        current = otel_trace.get_current_span()
        assert current is a.state
        assert otel_context.get_value(key) is True
    finally:
        undo()
    assert otel_context.get_value(key) is None
    assert otel_trace.get_current_span() is not a.state
    hooks.on_attempt_end(a)
    hooks.on_request_end(call)


def test_no_attempt_context_without_a_tracer() -> None:
    """With no SDK provider the hooks leave enter unset: nothing to attach per attempt."""
    hooks = TracingHooks(otel_trace.NoOpTracerProvider())
    call = make_call()
    hooks.on_request_start(call)
    a = AttemptInfo(call, 0, None, call.request, time.perf_counter())
    hooks.on_attempt_start(a)
    assert a.enter is None


def test_attempt_context_chains_to_an_earlier_observer(provider: TracerProvider) -> None:
    """An enter set by an earlier observer still runs, inside-out undo."""
    log: list[str] = []

    def earlier() -> Callable[[], object]:
        log.append("enter earlier")
        return lambda: log.append("undo earlier")

    hooks = TracingHooks(provider)
    call = make_call()
    hooks.on_request_start(call)
    a = AttemptInfo(call, 0, None, call.request, time.perf_counter())
    a.enter = earlier
    hooks.on_attempt_start(a)
    assert a.enter is not None
    undo = a.enter()
    log.append("send")
    undo()
    assert log == ["enter earlier", "send", "undo earlier"]


# --- the compiled dispatch (HookTable asks TracingHooks for it) -----------------------------


class _Seen(Hooks):
    """An observer before TracingHooks (as Prometheus is by default): sees every event."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[str] = []
        self.fail = fail

    def _see(self, event: str) -> None:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("observer bug")

    def on_request_start(self, call: CallInfo) -> None:
        self._see("request_start")

    def on_attempt_start(self, attempt: AttemptInfo) -> None:
        self._see("attempt_start")

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        self._see("attempt_end")

    def on_request_end(self, call: CallInfo) -> None:
        self._see("request_end")


def run_table(table: HookTable, call: CallInfo, status: int = 200) -> AttemptInfo:
    """Drive a HookTable's compiled dispatch like the pipeline: one attempt."""
    assert table.request_start and table.attempt_start and table.attempt_end
    assert table.request_end
    table.request_start(call)
    a = AttemptInfo(call, 0, None, call.request, time.perf_counter())
    table.attempt_start(a)
    a.status_code, a.duration = status, 0.01
    table.attempt_end(a)
    call.attempts, call.status_code = 1, status
    table.request_end(call)
    return a


def test_hook_table_takes_tracings_own_dispatch_after_one_other_observer() -> None:
    """TracingHooks last, alone or after one observer: its compiled dispatch is used; with
    two before it, the generic one."""
    for hooks in ([TracingHooks()], [_Seen(), TracingHooks()]):
        table = HookTable(hooks)
        for event in ("request_start", "attempt_start", "attempt_end", "request_end"):
            assert "_dispatch_after" in getattr(table, event).__qualname__
    generic = HookTable([_Seen(), _Seen(), TracingHooks()]).request_start
    assert generic is not None and "_dispatch_after" not in generic.__qualname__


@pytest.mark.usefixtures("no_global_sdk")
def test_compiled_dispatch_skips_idle_tracing_then_traces_once_a_provider_is_set(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SDK: the observer before TracingHooks sees every event and nothing is traced or
    injected; once the app sets its global provider, the same table traces."""
    seen = _Seen()
    table = HookTable([seen, TracingHooks()])
    call = make_call()
    a = run_table(table, call)
    assert seen.events == ["request_start", "attempt_start", "attempt_end", "request_end"]
    assert exporter.get_finished_spans() == () and a.state is None and call.state == {}
    assert "traceparent" not in call.request.headers
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    call = make_call()
    run_table(table, call, status=503)
    got = spans(exporter)
    assert len(got["client"]) == 1 and len(got["internal"]) == 1
    assert got["client"][0].attributes is not None
    assert got["client"][0].attributes["http.response.status_code"] == 503
    assert "traceparent" in call.request.headers


@pytest.mark.usefixtures("no_global_sdk")
def test_compiled_dispatch_propagates_an_incoming_trace_without_an_sdk() -> None:
    """No SDK, but a trace in the current context: the dispatch still injects it."""
    incoming = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    token = otel_context.attach(otel_trace.set_span_in_context(NonRecordingSpan(incoming)))
    try:
        call = make_call()
        run_table(HookTable([_Seen(), TracingHooks()]), call)
    finally:
        otel_context.detach(token)
    assert call.request.headers["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-01"


@pytest.mark.usefixtures("no_global_sdk")
def test_compiled_dispatch_records_duration_once_a_global_meter_provider_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The histogram is not called with no global MeterProvider, and is once one is set."""
    from opentelemetry.metrics import _internal as metrics_internal

    if metrics_internal._METER_PROVIDER is not None:
        pytest.skip("a global meter provider is set in this process")
    hooks = TracingHooks()
    recorded: list[object] = []
    monkeypatch.setattr(hooks._histogram, "record", lambda *a, **k: recorded.append(a))
    table = HookTable([hooks])
    run_table(table, make_call())
    assert recorded == []
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", MeterProvider())
    run_table(table, make_call())
    assert len(recorded) == 1


def test_compiled_dispatch_logs_a_raising_first_observer_and_still_traces(
    provider: TracerProvider, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer before TracingHooks that raises is logged; the spans are still made."""
    seen = _Seen(fail=True)
    run_table(HookTable([seen, TracingHooks(provider)]), make_call())
    assert len(seen.events) == 4 and caplog.text.count("svcclient hook") == 4
    assert len(spans(exporter)["client"]) == 1


# --- once per call: tracing sits the call out (HookTable.idle / .lean) ----------------------


def idle(table: HookTable) -> bool:
    assert table.idle is not None
    return table.idle()


@pytest.mark.usefixtures("no_global_sdk")
def test_idle_gate_is_true_only_when_tracing_has_nothing_to_do(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SDK and no incoming trace: idle; an incoming trace, a global tracer or meter
    provider set later, or an explicit tracer: not idle."""
    from opentelemetry.metrics import _internal as metrics_internal

    if metrics_internal._METER_PROVIDER is not None:
        pytest.skip("a global meter provider is set in this process")
    table = HookTable([_Seen(), TracingHooks()])
    assert idle(table)
    incoming = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    token = otel_context.attach(otel_trace.set_span_in_context(NonRecordingSpan(incoming)))
    try:
        assert not idle(table)
        assert idle(HookTable([TracingHooks(propagate=False)]))
    finally:
        otel_context.detach(token)
    assert not idle(HookTable([TracingHooks(provider)]))
    with monkeypatch.context() as patched:
        patched.setattr(metrics_internal, "_METER_PROVIDER", MeterProvider())
        assert not idle(table)
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    assert not idle(table)


def test_lean_dispatch_is_the_other_observers_own_methods() -> None:
    """Without TracingHooks' events, a sole other observer's methods are called as they
    are (no wrapper); with no gate, every observer is in the lean dispatch."""
    seen = _Seen()
    lean = HookTable([seen, TracingHooks()]).lean
    assert lean.request_start == seen.on_request_start
    assert lean.attempt_end == seen.on_attempt_end
    assert HookTable([seen]).idle is None
    assert HookTable([seen]).lean.request_end == seen.on_request_end
    assert HookTable([TracingHooks()]).lean.attempt_start is None


@pytest.mark.usefixtures("no_global_sdk")
def test_pipeline_logs_a_raising_observer_called_without_a_wrapper(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through the pipeline with idle tracing, an observer that raises in every event is
    logged each time and the request still succeeds."""
    from svcclient import ResilientTransport

    seen = _Seen(fail=True)
    transport = ResilientTransport(
        "users",
        httpx.MockTransport(lambda request: httpx.Response(200)),
        url="http://users:8080",
        hooks=[seen, TracingHooks()],
    )
    with httpx.Client(transport=transport) as client:
        assert client.get("http://users:8080/a").status_code == 200
    assert seen.events == ["request_start", "attempt_start", "attempt_end", "request_end"]
    assert caplog.text.count("svcclient hook") == 4
