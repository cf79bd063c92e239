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
from svcclient._observability.hooks import (
    AttemptInfo,
    CallInfo,
    Hooks,
    HookTable,
    call_ended,
    fire,
)
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
    """A call as the pipeline makes it: the current context is its trace_context."""
    request = httpx.Request(method, url)
    context = otel_context.get_current() or None
    return CallInfo("users", method, route, request, time.perf_counter(), trace_context=context)


def run(
    hooks: TracingHooks,
    call: CallInfo,
    outcomes: list[tuple[int | None, str | None]],
    endpoint: Endpoint | None = None,
) -> list[AttemptInfo]:
    """Drive the hooks like the pipeline: start, attempts (with retries), end."""
    attempts = []
    hooks.enabled(call)  # asked first, as the pipeline does
    hooks.on_request_start(call)
    for number, (status, error) in enumerate(outcomes):
        if number:
            hooks.on_retry(call_ended(call, number, None, None, 0.0), 0.0, "retry")
        a = AttemptInfo(call, number, endpoint, call.request, time.perf_counter())
        hooks.on_attempt_start(a)
        a = ended(a, status, error)
        hooks.on_attempt_end(a)
        attempts.append(a)
    status, error = outcomes[-1] if outcomes else (None, None)
    hooks.on_request_end(call_ended(call, len(outcomes), status, error, 0.01))
    return attempts


def ended(a: AttemptInfo, status: int | None, error: str | None = None) -> AttemptInfo:
    """The value on_attempt_end gets: ``a`` with its outcome (same state)."""
    return AttemptInfo(
        a.call, a.number, a.endpoint, a.request, a.started, status, error, 0.01, a.state
    )


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
    hooks.enabled(call)
    hooks.on_request_start(call)
    hooks.on_breaker_reject("users")
    hooks.on_request_end(call_ended(call, 1, None, "circuit_open", 0.01))
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
        hooks.on_attempt_end(ended(a, 200))
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
    assert all(a.state == {} for a in attempts)
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
    assert attempts[0].state == {}
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
    """The attempt context on_attempt_start returns makes the attempt's span current and
    sets the suppress-HTTP key; its undo clears both."""
    hooks = TracingHooks(provider)
    call = make_call()
    hooks.enabled(call)
    hooks.on_request_start(call)
    a = AttemptInfo(call, 0, None, call.request, time.perf_counter())
    enter = hooks.on_attempt_start(a)
    assert enter is not None
    span = a.state["svcclient.attempt_span"]
    key = otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY
    assert not otel_context.get_value(key)
    undo = enter()
    try:
        assert otel_trace.get_current_span() is span
        assert otel_context.get_value(key) is True
    finally:
        undo()
    assert otel_context.get_value(key) is None
    assert otel_trace.get_current_span() is not span
    hooks.on_attempt_end(ended(a, 200))
    hooks.on_request_end(call_ended(call, 1, 200, None, 0.01))


def test_no_attempt_context_without_a_tracer() -> None:
    """With no SDK provider the hooks return no attempt context: nothing to attach."""
    hooks = TracingHooks(otel_trace.NoOpTracerProvider())
    call = make_call()
    hooks.on_request_start(call)
    a = AttemptInfo(call, 0, None, call.request, time.perf_counter())
    assert hooks.on_attempt_start(a) is None


def test_attempt_contexts_of_two_observers_are_chained(provider: TracerProvider) -> None:
    """Two observers' attempt contexts are both entered, in order, and undone inside-out."""
    log: list[str] = []

    class Earlier(Hooks):
        def on_attempt_start(self, attempt: AttemptInfo) -> Callable[[], Callable[[], object]]:
            def enter() -> Callable[[], object]:
                log.append("enter earlier")
                return lambda: log.append("undo earlier")

            return enter

    table = HookTable([Earlier(), TracingHooks(provider)])
    call = make_call()
    events = table.select(call)
    assert events.attempt_start is not None
    enter = events.attempt_start(AttemptInfo(call, 0, None, call.request, time.perf_counter()))
    assert enter is not None
    undo = enter()
    log.append("send")
    undo()
    assert log == ["enter earlier", "send", "undo earlier"]


# --- once per call: HookTable asks TracingHooks.enabled -------------------------------------


class _Seen(Hooks):
    """Another observer (as Prometheus is by default): sees every event."""

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
    """Drive a HookTable like the pipeline: the call's events asked for once, one attempt."""
    events = table.select(call)
    for event, value in (("request_start", call),):
        dispatch = getattr(events, event)
        if dispatch is not None:
            fire((dispatch,), value)
    a = AttemptInfo(call, 0, None, call.request, time.perf_counter())
    if events.attempt_start is not None:
        fire((events.attempt_start,), a)
    a = ended(a, status)
    if events.attempt_end is not None:
        fire((events.attempt_end,), a)
    if events.request_end is not None:
        fire((events.request_end,), call_ended(call, 1, status, None, 0.01))
    return a


@pytest.mark.usefixtures("no_global_sdk")
def test_idle_tracing_hears_nothing_then_traces_once_a_provider_is_set(
    provider: TracerProvider, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SDK: the other observer sees every event and nothing is traced or injected;
    once the app sets its global provider, the same table traces."""
    seen = _Seen()
    table = HookTable([seen, TracingHooks()])
    call = make_call()
    a = run_table(table, call)
    assert seen.events == ["request_start", "attempt_start", "attempt_end", "request_end"]
    assert exporter.get_finished_spans() == () and a.state == {} and call.state == {}
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
def test_an_incoming_trace_is_propagated_without_an_sdk() -> None:
    """No SDK, but a trace in the call's context: tracing has work and injects it."""
    incoming = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    token = otel_context.attach(otel_trace.set_span_in_context(NonRecordingSpan(incoming)))
    try:
        call = make_call()
        run_table(HookTable([_Seen(), TracingHooks()]), call)
    finally:
        otel_context.detach(token)
    assert call.request.headers["traceparent"] == f"00-{0xABC:032x}-{0xDEF:016x}-01"


@pytest.mark.usefixtures("no_global_sdk")
def test_duration_is_recorded_once_a_global_meter_provider_is_set(
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


def test_a_raising_other_observer_is_logged_and_tracing_still_traces(
    provider: TracerProvider, exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """An observer beside TracingHooks that raises is logged; the spans are still made."""
    seen = _Seen(fail=True)
    run_table(HookTable([seen, TracingHooks(provider)]), make_call())
    assert len(seen.events) == 4 and caplog.text.count("svcclient hook") == 4
    assert len(spans(exporter)["client"]) == 1


@pytest.mark.usefixtures("no_global_sdk")
def test_enabled_is_false_only_when_tracing_has_nothing_to_do(
    provider: TracerProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No SDK and no incoming trace: False; an incoming trace, a global tracer or meter
    provider set later, or an explicit tracer: True."""
    from opentelemetry.metrics import _internal as metrics_internal

    if metrics_internal._METER_PROVIDER is not None:
        pytest.skip("a global meter provider is set in this process")
    tracing = TracingHooks()
    assert not tracing.enabled(make_call())
    incoming = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    token = otel_context.attach(otel_trace.set_span_in_context(NonRecordingSpan(incoming)))
    try:
        assert tracing.enabled(make_call())
        assert not TracingHooks(propagate=False).enabled(make_call())
    finally:
        otel_context.detach(token)
    assert TracingHooks(provider).enabled(make_call())
    with monkeypatch.context() as patched:
        patched.setattr(metrics_internal, "_METER_PROVIDER", MeterProvider())
        assert tracing.enabled(make_call())
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", provider)
    assert tracing.enabled(make_call())


@pytest.mark.usefixtures("no_global_sdk")
def test_a_call_tracing_sits_out_has_the_other_observers_own_methods() -> None:
    """Tracing idle: the call's events are the sole other observer's methods as they are
    (no wrapper); a table where nobody asks has no gate and one set of events."""
    seen = _Seen()
    table = HookTable([seen, TracingHooks()])
    events = table.select(make_call())
    assert events is not table.events
    assert events.request_start == seen.on_request_start
    assert events.attempt_end == seen.on_attempt_end
    assert HookTable([seen]).gate is None
    assert HookTable([seen]).events.request_end == seen.on_request_end
    assert HookTable([TracingHooks()]).select(make_call()).attempt_start is None


def test_several_observers_that_ask_each_sit_out_on_their_own() -> None:
    """With two observers asking, each False answer leaves only that observer out."""

    class Asking(_Seen):
        def __init__(self, answer: bool) -> None:
            super().__init__()
            self.answer = answer

        def enabled(self, call: CallInfo) -> bool:
            return self.answer

    yes, no, plain = Asking(True), Asking(False), _Seen()
    run_table(HookTable([yes, no, plain]), make_call())
    assert (
        yes.events
        == plain.events
        == ["request_start", "attempt_start", "attempt_end", "request_end"]
    )
    assert no.events == []


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
