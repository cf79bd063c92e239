"""OpenTelemetry spans and metrics for outbound calls (needs only ``opentelemetry-api``).

Theory of operation:

* **One CLIENT span per attempt**, named ``"{method} {route}"`` (``"{method}"`` when the
  route is ``other``) per the HTTP client semantic conventions, with
  ``http.request.method``, ``server.address``, ``server.port``, ``url.full`` (redacted by
  :func:`redact_url`), ``url.template``, ``service.peer.name``, ``network.peer.*`` (the
  chosen endpoint), ``http.request.resend_count`` (attempts after the first),
  ``http.response.status_code`` and ``error.type``. As the conventions require for CLIENT
  spans, the status is ERROR for transport errors *and* for 4xx/5xx responses, with
  ``error.type`` set to the status code.
* **One INTERNAL span per logical call** (``call_span=True``, the default), parent of its
  attempts. A span cannot be re-parented after it started, so "a parent only when there
  are retries" would leave the first attempt outside it; instead the logical span always
  exists when tracing is on. It costs one extra span per call and buys a place to record
  calls that never sent anything (``error.type=circuit_open``) and the full retry story.
  Pass ``call_span=False`` to get attempt spans only.
* **W3C trace context** is injected into each attempt's headers through the global
  propagator (``opentelemetry.propagate.inject``), so the server's span joins the trace.
* **Beside opentelemetry-instrumentation-httpx.** While an attempt is sent its span is
  the current span and OpenTelemetry's suppress-HTTP-instrumentation context key is set
  (through the attempt context ``on_attempt_start`` returns, which the drivers enter
  around the send), so a globally
  patched httpx transport makes no second CLIENT span and does not overwrite
  ``traceparent``. ``instrument_client`` on a ``ServiceClient`` wraps the whole pipeline
  in a span per *call*; the client tells it to stand aside the same way. Either way the
  server's parent is svcclient's attempt span. (A plain ``httpx.Client`` over a
  ``ResilientTransport`` given to ``instrument_client`` keeps that outer span: svcclient
  does not own that client's ``send``.)
* **OTel metrics**: ``http.client.request.duration`` (histogram, unit ``s``, the
  conventions' advisory buckets) is recorded per attempt with ``http.request.method``,
  ``server.address``, ``server.port``, ``url.scheme``, ``url.template``,
  ``http.response.status_code`` and ``error.type``.

The no-SDK fast path: with only ``opentelemetry-api`` installed (or no provider set), the
API's tracer is a no-op proxy. Rather than create and end no-op spans per attempt, the
observer says once per call whether it has work for it (:meth:`TracingHooks.enabled`:
a real tracer, a meter provider, or a context to propagate) and hears none of the call's
events when it has none. It still propagates: if the call's context carries a trace (for
example an incoming ``traceparent`` extracted by the app's server framework) it is
injected, so propagation works through services that do not record spans themselves.
Whether a global provider appeared is looked at in that one place, once per call (one
read of the API's global slot): a provider set *after* the hooks were created is picked
up on the next call.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from opentelemetry import context as _otel_context
from opentelemetry import metrics as _otel_metrics
from opentelemetry import trace as _otel_trace
from opentelemetry.metrics import Histogram, MeterProvider, NoOpMeterProvider
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)

from .._redact import redact_url
from .hooks import (
    KNOWN_METHODS,
    OTEL_DURATION_BUCKETS,
    TRACE_ID_STATE_KEY,
    AttemptContext,
    AttemptInfo,
    CallInfo,
    Hooks,
)
from .routes import OTHER_ROUTE

__all__ = ["KNOWN_METHODS", "TRACE_ID_STATE_KEY", "TracingHooks", "redact_url"]


if TYPE_CHECKING:
    from httpx import Headers

_INSTRUMENTATION_NAME: Final = "svcclient"
try:
    from importlib.metadata import version as _dist_version

    _VERSION: str = _dist_version("svcclient")
except Exception:  # pragma: no cover - running from a source tree without metadata
    _VERSION = "0"

_CALL_SPAN_KEY: Final = "svcclient.call_span"
_ATTEMPT_SPAN_KEY: Final = "svcclient.attempt_span"
_OTEL_BUCKETS: Final = OTEL_DURATION_BUCKETS

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


# The API keeps the global providers in module slots that stay None until an app sets one.
# Reading the slot is ~30 ns, against ~300 ns for get_tracer_provider() (which also looks
# at os.environ). Both names are pinned for every API release in the supported range
# (tests/test_private_names.py). TracingHooks.enabled reads them once per call.
from opentelemetry.metrics import _internal as _otel_metrics_internal  # noqa: E402

_propagate: list[Callable[..., None]] = []


def _inject(headers: Headers, ctx: _otel_context.Context) -> None:
    # opentelemetry.propagate reads the propagators' entry points when imported (tens of
    # ms): imported on the first injection, not with svcclient.
    if not _propagate:
        from opentelemetry import propagate

        _propagate.append(propagate.inject)
    _propagate[0](headers, context=ctx)


# The context key OpenTelemetry's HTTP client instrumentations check before making a span
# (opentelemetry-api keeps it with the context; the instrumentation package reads it).
_SUPPRESS_HTTP_KEY: Final = getattr(
    _otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", "suppress_http_instrumentation"
)


def _attach(ctx: _otel_context.Context) -> Callable[[], object]:
    return functools.partial(_otel_context.detach, _otel_context.attach(ctx))


def suppressing_http_instrumentation() -> contextlib.AbstractContextManager[object]:
    """A ``with`` block in which OpenTelemetry's HTTP instrumentations make no spans."""
    return _Suppressed()


class _Suppressed:
    __slots__ = ("_token",)

    def __enter__(self) -> object:
        self._token = _otel_context.attach(_otel_context.set_value(_SUPPRESS_HTTP_KEY, True))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _otel_context.detach(self._token)


def _noop_tracer_provider(tp: TracerProvider) -> bool:
    return isinstance(tp, NoOpTracerProvider | ProxyTracerProvider)


def _method(method: str) -> str:
    return method if method in KNOWN_METHODS else "_OTHER"


def _span_name(method: str, route: str) -> str:
    m = _method(method)
    if m == "_OTHER":
        m = "HTTP"
    return m if not route or route == OTHER_ROUTE else f"{m} {route}"


def _error_type(status: int | None, error_type: str | None) -> str | None:
    if error_type is not None:
        return error_type
    if status is not None and status >= 400:
        return str(status)
    return None


class TracingHooks(Hooks):
    """Observer that records OpenTelemetry spans, trace propagation and metrics.

    ``tracer_provider`` / ``meter_provider`` default to the global ones (set by the app
    with the OpenTelemetry SDK; no-ops otherwise). ``call_span=True`` adds an INTERNAL span
    per logical call around the attempt spans. ``propagate=True`` injects W3C
    ``traceparent`` (and whatever else the global propagator carries) into each attempt.

    Example::

        from opentelemetry.sdk.trace import TracerProvider
        hooks = TracingHooks(tracer_provider=TracerProvider())

    The hooks keep their spans in ``CallInfo.state`` and ``AttemptInfo.state`` under
    keys of their own (``svcclient.*``); other observers should use keys of theirs.
    """

    __slots__ = (
        "_call_span",
        "_explicit_tp",
        "_histogram",
        "_meter_explicit",
        "_propagate",
        "_seen_tp",
        "_tracer",
    )

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        call_span: bool = True,
        propagate: bool = True,
    ) -> None:
        self._call_span = call_span
        self._propagate = propagate
        self._explicit_tp = tracer_provider is not None
        self._tracer: Tracer | None = None
        self._seen_tp: TracerProvider | None = None
        if tracer_provider is not None:
            if not _noop_tracer_provider(tracer_provider):
                self._tracer = tracer_provider.get_tracer(_INSTRUMENTATION_NAME, _VERSION)
        else:
            # Lets the API load a provider named by OTEL_PYTHON_TRACER_PROVIDER now, so
            # the cheap slot check below sees it.
            _otel_trace.get_tracer_provider()

        # With the global MeterProvider, the API hands out proxy instruments that start
        # forwarding once the app sets a provider, so the instrument is made once here.
        self._meter_explicit: bool | None = None
        if meter_provider is not None:
            self._meter_explicit = not isinstance(meter_provider, NoOpMeterProvider)
            meter = meter_provider.get_meter(_INSTRUMENTATION_NAME, _VERSION)
        else:
            meter = _otel_metrics.get_meter(_INSTRUMENTATION_NAME, _VERSION)
        self._histogram: Histogram = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (one per attempt).",
            explicit_bucket_boundaries_advisory=_OTEL_BUCKETS,
        )

    # -- does it have work for a call -----------------------------------------------------

    def enabled(self, call: CallInfo) -> bool:
        """Asked once per call (see :meth:`Hooks.enabled`): a tracer (resolved again here
        when a global provider appeared since the last look: the one place that looks),
        a meter provider, or a context to propagate. False: nothing to do for the call."""
        if not self._explicit_tp:
            provider = _otel_trace._TRACER_PROVIDER
            if provider is not self._seen_tp:
                self._seen_tp = provider
                self._tracer = (
                    None
                    if provider is None or _noop_tracer_provider(provider)
                    else provider.get_tracer(_INSTRUMENTATION_NAME, _VERSION)
                )
        if self._tracer is not None or (self._propagate and call.trace_context is not None):
            return True
        explicit = self._meter_explicit  # _meters(), without its Python frame
        if explicit is not None:
            return explicit
        return _otel_metrics_internal._METER_PROVIDER is not None

    def _meters(self) -> bool:
        """Is ``http.client.request.duration`` recorded (a meter provider set)?"""
        explicit = self._meter_explicit
        if explicit is not None:
            return explicit
        return _otel_metrics_internal._METER_PROVIDER is not None

    # -- hooks -----------------------------------------------------------------------------

    def on_request_start(self, call: CallInfo) -> None:
        """Open the logical call's INTERNAL span (only when a real tracer exists)."""
        if not self._call_span:
            return
        tracer = self._tracer  # as enabled() found it for this call
        if tracer is None:
            return
        method = _method(call.method)
        attrs: dict[str, str | int] = {
            "http.request.method": method,
            "service.peer.name": call.service,
            "url.template": call.route,
        }
        if method == "_OTHER":
            attrs["http.request.method_original"] = call.method
        span = tracer.start_span(
            _span_name(call.method, call.route), kind=SpanKind.INTERNAL, attributes=attrs
        )
        call.state[_CALL_SPAN_KEY] = span
        ctx = span.get_span_context()
        if ctx.trace_flags.sampled:
            call.state[TRACE_ID_STATE_KEY] = format(ctx.trace_id, "032x")

    def on_request_end(self, call: CallInfo) -> None:
        """Close the logical call's span with its final outcome."""
        state = call.state
        if not state:
            return
        span = state.pop(_CALL_SPAN_KEY, None)
        if not isinstance(span, Span):
            return
        if call.status_code is not None:
            span.set_attribute("http.response.status_code", call.status_code)
        err = _error_type(call.status_code, call.error_type)
        if err is not None:
            span.set_attribute("error.type", err)
            span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("svcclient.attempts", call.attempts)
        span.end()

    def on_retry(self, call: CallInfo, delay: float, reason: str) -> None:
        """Add a ``retry`` event (delay, reason) to the logical call's span."""
        state = call.state
        span = state.get(_CALL_SPAN_KEY) if state else None
        if isinstance(span, Span):
            span.add_event(
                "retry", {"svcclient.retry.delay": delay, "svcclient.retry.reason": reason}
            )

    def on_attempt_start(self, attempt: AttemptInfo) -> AttemptContext | None:
        """Open the attempt's CLIENT span and inject its trace context into the headers;
        return the context that makes the span current while the attempt is sent."""
        call = attempt.call
        tracer = self._tracer  # as enabled() found it for this call
        if tracer is None:
            # Propagate the call's context: an incoming trace, baggage (None: nothing).
            if self._propagate and call.trace_context is not None:
                _inject(attempt.request.headers, call.trace_context)
            return None
        url = attempt.request.url
        method = _method(call.method)
        attrs: dict[str, str | int] = {
            "http.request.method": method,
            "server.address": url.host,
            "server.port": url.port or _DEFAULT_PORTS.get(url.scheme, 0),
            "url.full": redact_url(url),
            "url.template": call.route,
            "service.peer.name": call.service,
        }
        if method == "_OTHER":
            attrs["http.request.method_original"] = call.method
        if attempt.number > 0:
            attrs["http.request.resend_count"] = attempt.number
        endpoint = attempt.endpoint
        if endpoint is not None:
            attrs["network.peer.address"] = endpoint.host
            attrs["network.peer.port"] = endpoint.port
        parent = call.state.get(_CALL_SPAN_KEY)
        parent_ctx = _otel_trace.set_span_in_context(parent) if isinstance(parent, Span) else None
        span = tracer.start_span(
            _span_name(call.method, call.route),
            context=parent_ctx,
            kind=SpanKind.CLIENT,
            attributes=attrs,
        )
        attempt.state[_ATTEMPT_SPAN_KEY] = span
        span_ctx = span.get_span_context()
        if span_ctx.trace_flags.sampled and TRACE_ID_STATE_KEY not in call.state:
            call.state[TRACE_ID_STATE_KEY] = format(span_ctx.trace_id, "032x")
        span_in_ctx = _otel_trace.set_span_in_context(span, parent_ctx)
        if self._propagate:
            _inject(attempt.request.headers, span_in_ctx)
        # While the attempt is sent its span is current, and OpenTelemetry's HTTP
        # instrumentations (opentelemetry-instrumentation-httpx patches the transport that
        # sends) are told to stand aside: one CLIENT span per attempt, and the server's
        # parent is this one, not a second span that overwrites traceparent.
        sending = _otel_context.set_value(_SUPPRESS_HTTP_KEY, True, span_in_ctx)
        return functools.partial(_attach, sending)

    def on_attempt_end(self, attempt: AttemptInfo) -> None:
        """Close the attempt's span and record ``http.client.request.duration``."""
        span = attempt.state.pop(_ATTEMPT_SPAN_KEY, None)
        if isinstance(span, Span):
            status = attempt.status_code
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            err = _error_type(status, attempt.error_type)
            if err is not None:
                span.set_attribute("error.type", err)
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        if self._meters():
            self._histogram.record(attempt.duration, self._metric_attributes(attempt))

    def _metric_attributes(self, attempt: AttemptInfo) -> Mapping[str, str | int]:
        call = attempt.call
        url = attempt.request.url
        attrs: dict[str, str | int] = {
            "http.request.method": _method(call.method),
            "server.address": url.host,
            "server.port": url.port or _DEFAULT_PORTS.get(url.scheme, 0),
            "url.scheme": url.scheme,
            "url.template": call.route,
        }
        status = attempt.status_code
        if status is not None:
            attrs["http.response.status_code"] = status
        err = _error_type(status, attempt.error_type)
        if err is not None:
            attrs["error.type"] = err
        return attrs
