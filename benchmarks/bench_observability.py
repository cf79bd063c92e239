"""Per-attempt cost of the observers: PrometheusHooks and TracingHooks (with and without SDK).

Drives the hooks with a synthetic CallInfo/AttemptInfo sequence, the way the pipeline
calls them, and reports the best-of-N mean in microseconds. Run::

    .venv/bin/python benchmarks/bench_observability.py          # full
    .venv/bin/python benchmarks/bench_observability.py --quick  # a few seconds

Targets: ``PrometheusHooks.on_attempt_end`` <= 3 us; ``TracingHooks`` attempt
start+end with no SDK <= 0.5 us.
"""

from __future__ import annotations

import sys
import time
import timeit
from collections.abc import Callable

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import CollectorRegistry, Histogram

from svcclient._observability.hooks import AttemptInfo, CallInfo, Hooks
from svcclient._observability.otel import TRACE_ID_STATE_KEY, TracingHooks
from svcclient._observability.prometheus import PrometheusHooks
from svcclient._observability.routes import RouteTable, normalize_route


def _sample() -> tuple[CallInfo, AttemptInfo]:
    req = httpx.Request("GET", "http://users.prod.svc.cluster.local:8080/users/42?page=2")
    now = time.perf_counter()
    call = CallInfo("users", "GET", "/users/{id}", req, now)
    attempt = AttemptInfo(call, 0, None, req, now, status_code=200, duration=0.0042)
    return call, attempt


def _us(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def run(quick: bool = False) -> dict[str, float]:
    """Measure every case; returns microseconds per operation by case name."""
    number, repeat = (20_000, 3) if quick else (20_000, 30)
    out: dict[str, float] = {}

    call, attempt = _sample()
    base = Hooks()

    def baseline() -> None:
        base.on_attempt_start(attempt)
        base.on_attempt_end(attempt)

    out["baseline: no-op Hooks attempt start+end"] = _us(baseline, number, repeat)

    bare = Histogram("bare_seconds", "bare", ["a"], registry=CollectorRegistry()).labels("x")
    out["baseline: prometheus-client child.observe alone"] = _us(
        lambda: bare.observe(0.0042), number, repeat
    )

    prom = PrometheusHooks(CollectorRegistry())
    prom.on_attempt_end(attempt)  # create the label child outside the timing
    out["prometheus: on_attempt_end"] = _us(lambda: prom.on_attempt_end(attempt), number, repeat)

    def prom_call() -> None:
        prom.on_request_start(call)
        prom.on_attempt_end(attempt)
        prom.on_request_end(call)

    out["prometheus: whole call (start, attempt_end, end)"] = _us(prom_call, number, repeat)

    call_x, attempt_x = _sample()
    call_x.state[TRACE_ID_STATE_KEY] = "0af7651916cd43dd8448eb211c80319c"
    prom.on_attempt_end(attempt_x)
    out["prometheus: on_attempt_end with exemplar"] = _us(
        lambda: prom.on_attempt_end(attempt_x), number, repeat
    )

    nosdk = TracingHooks()

    def trace_attempt(h: TracingHooks, a: AttemptInfo) -> Callable[[], None]:
        def f() -> None:
            h.on_attempt_start(a)
            h.on_attempt_end(a)

        return f

    out["tracing, no SDK: attempt start+end"] = _us(trace_attempt(nosdk, attempt), number, repeat)

    def trace_call(h: TracingHooks, c: CallInfo, a: AttemptInfo) -> Callable[[], None]:
        def f() -> None:
            h.on_request_start(c)
            h.on_attempt_start(a)
            h.on_attempt_end(a)
            h.on_request_end(c)

        return f

    out["tracing, no SDK: whole call"] = _us(trace_call(nosdk, call, attempt), number, repeat)

    incoming = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1)
    )
    token = otel_context.attach(otel_trace.set_span_in_context(NonRecordingSpan(incoming)))
    try:
        out["tracing, no SDK, incoming trace (inject only): attempt"] = _us(
            trace_attempt(nosdk, attempt), number, repeat
        )
    finally:
        otel_context.detach(token)

    sdk_number = max(number // 10, 2_000)
    provider = TracerProvider()  # no processor: spans are built and dropped
    with_sdk = TracingHooks(provider)
    call_s, attempt_s = _sample()
    out["tracing, SDK (no exporter): attempt start+end"] = _us(
        trace_attempt(with_sdk, attempt_s), sdk_number, repeat
    )
    out["tracing, SDK (no exporter): whole call incl. call span"] = _us(
        trace_call(with_sdk, call_s, attempt_s), sdk_number, repeat
    )
    exported = TracerProvider()
    exporter = InMemorySpanExporter()
    exported.add_span_processor(SimpleSpanProcessor(exporter))
    with_exporter = TracingHooks(exported)
    out["tracing, SDK + in-memory exporter: whole call"] = _us(
        trace_call(with_exporter, call_s, attempt_s), sdk_number, repeat
    )
    exporter.clear()

    table = RouteTable()
    table.route("/users/42/orders")
    out["routes: RouteTable.route cache hit"] = _us(
        lambda: table.route("/users/42/orders"), number, repeat
    )
    out["routes: normalize_route (miss)"] = _us(
        lambda: normalize_route("/users/42/orders/3f2b9c1e-8a4d-4c5e-9f00-1234567890ab"),
        number // 4,
        repeat,
    )
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    results = run(quick)
    print(f"## Observability overhead ({'quick' if quick else 'full'} run)\n")
    print("| case | µs / op |")
    print("|---|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
