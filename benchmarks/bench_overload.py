"""Overload: a server of bounded capacity C, offered 3 x C, with and without overload control.

A child process (:mod:`benchmarks._capacity`) runs a loopback server with ``workers``
workers and a fixed service time, so it serves at most C requests per second; up to
``queue_limit`` requests wait for a worker and the rest are shed with a 503, which still
costs the server a tenth of a service time. Each contender sends an open-loop stream of GET
requests at ``3 x C`` per second for a fixed time (async tasks, one per request, started on
schedule whatever the earlier ones are doing), on a fresh client; the server's counters are
reset between contenders.

Contenders: bare ``httpx.AsyncClient``; svcclient with its current defaults (retries with a
budget, breaker, bulkhead); svcclient with adaptive throttling (``ThrottlePolicy()``, and
with ``k=1.5``); with an adaptive concurrency limit (``ConcurrencyPolicy()``: Vegas, and
Gradient2); with both. ``--quick`` runs the first four of these for 3 s each.

Reported per contender:

* **server goodput**: requests the server served (200) per second during the load window
  after a warm-up (the first 30 %), as a fraction of C;
* **client success rate**: 200 responses over requests offered;
* **local rejections** (throttled, over the concurrency limit, breaker open, bulkhead
  full): how many, and their latency p50 / p99 / max;
* latency p50 / p99 of **admitted** calls (those that were sent, whatever their answer) and
  of successful ones;
* the server's worker time spent serving and shedding (the rest was idle) and the requests
  it received per request served: with throttling at ``k`` it receives about ``k`` per
  accept, so a server whose 503 costs ``s`` of a service serves at most ``1 / (1 + (k - 1)
  s)`` of C (90.9 % here at k = 2); a run below that shows whether capacity went idle;
* the server's no-load latency (one request at a time, before the runs) for reference;
* beside each contender's local rejections, the **same-loop floor**: a bare httpx call
  whose transport raises at once, started by the same open loop (one per ``FLOOR_EVERY``
  offered requests) under the same load, and how many rejections overlapped a cyclic GC
  pass — under load a rejection's tail is mostly the loop's and the process's, and the
  floor shows how much;
* a rejected call's wall time in a hot loop with no server (``_rejection_cost``), sync and
  async, beside baselines under the same harness: an empty function, a bare httpx call
  whose transport raises at once, and a CPU spin as long as the throttled call's median.

``--instructions`` counts, with callgrind, the instructions of the rejection path
(``Throttle.admit``, the transport, the whole ``httpx`` call beside a bare one) and what
throttling adds to a healthy request (``ServiceClient`` defaults with and without it).

Goals (issue 17): with throttling, goodput >= 90 % of C and local rejections <= 1 ms; with
the adaptive limit, admitted calls' p99 <= 2 x the server's no-load latency.

Run ``python -m benchmarks.bench_overload [--quick]``; ``run(quick)`` returns a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from benchmarks._callgrind import Batches, per_call
from benchmarks._capacity import Capacity, CapacityProcess
from benchmarks._timing import percentile
from svcclient import (
    AsyncResilientTransport,
    BulkheadFullError,
    CircuitOpenError,
    ConcurrencyLimitError,
    ConcurrencyPolicy,
    ResilientTransport,
    ServiceConfig,
    ThrottledError,
    ThrottlePolicy,
)

__all__ = ["CAPACITY", "CONTENDERS", "main", "render", "run"]

CAPACITY = Capacity(workers=16, service_time=0.5, shed_time=0.05, queue_limit=8)
LOAD = 3.0  # offered load, multiple of C
WARMUP = 0.3  # fraction of the run before goodput is counted
PATH = "/items/7"
CONTENDERS = {
    "httpx": "bare httpx",
    "defaults": "svcclient defaults",
    "throttle": "svcclient + throttle",
    "throttle_k15": "svcclient + throttle (k=1.5)",
    "vegas": "svcclient + concurrency (vegas)",
    "gradient2": "svcclient + concurrency (gradient2)",
    "both": "svcclient + throttle + vegas",
}
QUICK = ("httpx", "defaults", "throttle", "vegas")  # --quick (CI) runs only these
LOCAL = ("throttled", "limited", "breaker_open", "bulkhead_full")

Outcome = tuple[str, float, bool]  # (kind, seconds, a GC pass started meanwhile)
# One same-loop floor probe per this many offered requests: a bare httpx call whose
# transport raises at once, made by the same harness in the same loop under the same load,
# so a local rejection's latency can be read against what any failing call costs there.
FLOOR_EVERY = 2


def _params(quick: bool) -> dict[str, Any]:
    return {
        "seconds": 3.0 if quick else 10.0,
        "noload_requests": 8 if quick else 20,
        "reject_loop": 1000 if quick else 5000,
    }


def _config(name: str) -> ServiceConfig | None:
    # url replaced below; service names are DNS labels
    base = ServiceConfig(f"bench-overload-{name.replace('_', '-')}", url="http://127.0.0.1")
    if name == "defaults":
        return base
    if name == "throttle":
        return dataclasses.replace(base, throttle=ThrottlePolicy())
    if name == "throttle_k15":
        return dataclasses.replace(base, throttle=ThrottlePolicy(k=1.5))
    if name == "vegas":
        return dataclasses.replace(base, concurrency=ConcurrencyPolicy())
    if name == "gradient2":
        return dataclasses.replace(base, concurrency=ConcurrencyPolicy(algorithm="gradient2"))
    if name == "both":
        return dataclasses.replace(base, throttle=ThrottlePolicy(), concurrency=ConcurrencyPolicy())
    return None


def _client(name: str, url: str) -> httpx.AsyncClient:
    config = _config(name)
    if config is None:
        return httpx.AsyncClient(base_url=url)
    config = config.with_overrides(url=url)
    transport = AsyncResilientTransport(config, registry=CollectorRegistry())
    return httpx.AsyncClient(base_url=url, transport=transport)


def _kind(exc: Exception) -> str:
    if isinstance(exc, ThrottledError):
        return "throttled"
    if isinstance(exc, ConcurrencyLimitError):
        return "limited"
    if isinstance(exc, CircuitOpenError):
        return "breaker_open"
    if isinstance(exc, BulkheadFullError):
        return "bulkhead_full"
    return "error"


async def _offer(
    client: httpx.AsyncClient,
    rate: float,
    seconds: float,
    warmup: float,
    stats: Callable[[], dict[str, int]],
) -> tuple[list[Outcome], list[Outcome], dict[str, int], float]:
    """``rate`` requests per second for ``seconds``, open loop; every task bounded.

    Returns the outcomes, the same-loop floor probes (see ``FLOOR_EVERY``), the server's
    counters over the steady part (after ``warmup`` seconds, so the first service times are
    not counted as lost capacity) and its length. Each outcome says whether a cyclic GC pass
    started while it ran (a pass stops every task in the process, whatever it is doing).
    """
    outcomes: list[Outcome] = []
    floor_outcomes: list[Outcome] = []
    passes = [0]

    def count_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes[0] += 1

    async def timed(get: Any, out: list[Outcome]) -> None:
        start, seen = time.perf_counter(), passes[0]
        try:
            response = await get(PATH)
            kind = "ok" if response.status_code == 200 else f"status_{response.status_code}"
        except Exception as exc:
            kind = _kind(exc)
        out.append((kind, time.perf_counter() - start, passes[0] != seen))

    floor = httpx.AsyncClient(
        base_url="http://127.0.0.1:9", transport=httpx.MockTransport(_refuse_at_transport)
    )
    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter()
    first: dict[str, int] | None = None
    t_first = t0
    gc.callbacks.append(count_gc)
    try:
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if first is None and time.perf_counter() - t0 >= warmup:
                first, t_first = stats(), time.perf_counter()
            tasks.append(asyncio.create_task(timed(client.get, outcomes)))
            if i % FLOOR_EVERY == 0:
                # Half-way to the next request, after a wake-up of the loop like the
                # offered ones (right behind one, it would find its caches warm).
                delay = t0 + (i + 0.5) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(timed(floor.get, floor_outcomes)))
        last, t_last = stats(), time.perf_counter()
        assert first is not None
        steady = {
            k: last[k] - first[k] for k in ("served", "shed", "busy_serve_us", "busy_shed_us")
        }
        steady["max_queue"] = last["max_queue"]
        # Every request is bounded by its client's timeouts (svcclient: the 3 s deadline;
        # httpx: 5 s per phase); this wait is the last resort.
        _, pending = await asyncio.wait(tasks, timeout=30.0)
        for task in pending:
            task.cancel()
    finally:
        gc.callbacks.remove(count_gc)
        await floor.aclose()
    return outcomes, floor_outcomes, steady, t_last - t_first


def _ms(values: list[float], q: float) -> float | None:
    return percentile(values, q) * 1000.0 if values else None


def _summary(
    outcomes: list[Outcome],
    floor: list[Outcome],
    offered: int,
    stats: dict[str, int],
    window: float,
) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for kind, _, _ in outcomes:
        kinds[kind] = kinds.get(kind, 0) + 1
    local = [s for k, s, _ in outcomes if k in LOCAL]
    local_no_gc = [s for k, s, g in outcomes if k in LOCAL and not g]
    admitted = [s for k, s, _ in outcomes if k not in LOCAL]
    ok = [s for k, s, _ in outcomes if k == "ok"]
    floor_all = [s for _, s, _ in floor]
    served_rate = stats["served"] / window
    worker_us = CAPACITY.workers * window * 1e6
    received = stats["served"] + stats["shed"]
    return {
        "offered": offered,
        "finished": len(outcomes),
        "outcomes": kinds,
        "server": stats,
        "window_s": window,
        "goodput": served_rate / CAPACITY.rate,
        # Where the server's worker time went: serving (goodput plus the sleep's overshoot
        # on a busy machine), saying no, and the rest idle.
        "busy_serving": stats["busy_serve_us"] / worker_us,
        "busy_shedding": stats["busy_shed_us"] / worker_us,
        "received_per_served": received / stats["served"] if stats["served"] else None,
        "success_rate": len(ok) / offered if offered else 0.0,
        "local_rejections": len(local),
        "local_p50_ms": _ms(local, 50),
        "local_p99_ms": _ms(local, 99),
        "local_max_ms": max(local) * 1000.0 if local else None,
        "local_during_gc": len(local) - len(local_no_gc),
        "local_no_gc_p99_ms": _ms(local_no_gc, 99),
        "floor_probes": len(floor_all),
        "floor_p50_ms": _ms(floor_all, 50),
        "floor_p99_ms": _ms(floor_all, 99),
        "admitted": len(admitted),
        "admitted_p50_ms": _ms(admitted, 50),
        "admitted_p99_ms": _ms(admitted, 99),
        "ok_p50_ms": _ms(ok, 50),
        "ok_p99_ms": _ms(ok, 99),
    }


async def _noload(url: str, n: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url) as client:
        lat = []
        for _ in range(n):
            start = time.perf_counter()
            (await client.get(PATH)).raise_for_status()
            lat.append(time.perf_counter() - start)
    return {"p50_ms": percentile(lat, 50) * 1000.0, "p99_ms": percentile(lat, 99) * 1000.0}


def _rigged(config: ServiceConfig, transport: Any) -> Any:
    """``transport`` whose throttle rejects every call (p = 1, a draw of 0)."""
    throttle = transport.runtime.throttle
    assert throttle is not None
    for _ in range(100):
        throttle.record(False)
    throttle.rng = lambda: 0.0
    return transport


_REJECT = ServiceConfig(
    "bench-overload-reject",
    url="http://127.0.0.1:9",  # never connected to: every call is rejected locally
    throttle=ThrottlePolicy(min_requests=0, max_reject_probability=1.0),
)


def _refuse_at_transport(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def _rejection_cost(n: int, rounds: int = 5) -> dict[str, dict[str, float]]:
    """One locally rejected call's wall time in a hot loop (no server, no load), beside
    baselines measured by the same harness.

    The clock starts as the call begins and stops in its ``except`` clause, in the caller's
    own thread or task; a throttled async call never suspends (checked: ``suspends``), so no
    other task runs inside the timed region. Baselines: an empty function (the harness), a
    bare ``httpx.Client`` whose transport raises at once (the floor of any call that fails
    at httpx's transport seam), and a CPU spin as long as the throttled call's median (what
    this machine's scheduler does to any code that long). Variants take turns in
    ``rounds`` rounds so that a burst of load from other processes hits them alike; the
    cyclic GC stays on, and its passes during each variant are counted.
    """
    perf = time.perf_counter
    sync_client = httpx.Client(
        base_url="http://127.0.0.1:9",
        transport=_rigged(_REJECT, ResilientTransport(_REJECT, registry=CollectorRegistry())),
    )
    bare = httpx.Client(
        base_url="http://127.0.0.1:9", transport=httpx.MockTransport(_refuse_at_transport)
    )
    loop = asyncio.new_event_loop()
    async_client = httpx.AsyncClient(
        base_url="http://127.0.0.1:9",
        transport=_rigged(_REJECT, AsyncResilientTransport(_REJECT, registry=CollectorRegistry())),
    )

    def timed(fn: Callable[[], object], exc: type[Exception], count: int) -> list[float]:
        lat = []
        for _ in range(count):
            start = perf()
            try:
                fn()
            except exc:
                lat.append(perf() - start)
            else:
                lat.append(perf() - start)
        return lat

    async def timed_async(count: int) -> list[float]:
        lat = []
        for _ in range(count):
            start = perf()
            try:
                await async_client.get(PATH)
            except ThrottledError:
                lat.append(perf() - start)
        return lat

    def suspends() -> bool:
        coro = async_client.get(PATH)
        try:
            coro.send(None)
        except ThrottledError:
            return False
        coro.close()
        return True

    spin_s = 0.0

    def spin() -> None:
        end = perf() + spin_s
        while perf() < end:
            pass

    def nothing() -> None:
        return None

    def get_sync() -> None:
        sync_client.get(PATH)

    def get_bare() -> None:
        bare.get(PATH)

    variants: dict[str, Callable[[int], list[float]]] = {
        "empty function": lambda c: timed(nothing, Exception, c),
        "bare httpx, transport raising": lambda c: timed(get_bare, httpx.ConnectError, c),
        "svcclient throttled, sync": lambda c: timed(get_sync, ThrottledError, c),
        "svcclient throttled, async": lambda c: loop.run_until_complete(timed_async(c)),
        "CPU spin, sync median long": lambda c: timed(spin, Exception, c),
    }
    gc_passes = dict.fromkeys(variants, 0)
    current = [""]

    def count_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and current[0]:
            gc_passes[current[0]] += 1

    for fn in variants.values():
        fn(200)  # warm: caches, first-call imports
    spin_s = percentile(variants["svcclient throttled, sync"](500), 50)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    gc.callbacks.append(count_gc)
    try:
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                current[0] = name
                samples[name] += variants[name](n // rounds)
                current[0] = ""
    finally:
        gc.callbacks.remove(count_gc)
    out: dict[str, dict[str, float]] = {}
    for name, lat in samples.items():
        out[name] = {
            "p50_us": percentile(lat, 50) * 1e6,
            "p99_us": percentile(lat, 99) * 1e6,
            "max_us": max(lat) * 1e6,
            "gc_passes": float(gc_passes[name]),
        }
    out["svcclient throttled, async"]["suspends"] = float(suspends())
    loop.run_until_complete(async_client.aclose())
    loop.close()
    sync_client.close()
    bare.close()
    return out


# -- instructions (callgrind): deterministic, unlike the wall clock above --------------------

CG_VARIANTS = (
    "empty function",
    "Throttle.admit(), rejecting",
    "ResilientTransport.handle_request, rejected",
    "httpx.Client.get via svcclient, rejected",
    "httpx.Client.get, bare, transport raising",
    "httpx.AsyncClient.get via svcclient, rejected",
    "httpx.AsyncClient.get, bare, transport raising",
    "ServiceClient defaults, 200 (sync mock)",
    "ServiceClient defaults + throttle, 200 (sync mock)",
    "AsyncServiceClient defaults, 200 (mock)",
    "AsyncServiceClient defaults + throttle, 200 (mock)",
)


def _cg_child(n: int) -> int:
    """Under callgrind: each variant ``n`` then ``2n`` times (:mod:`benchmarks._callgrind`)."""
    from svcclient import AsyncServiceClient, ServiceClient

    def constant() -> float:
        return 1000.0  # no window rolls over inside a batch

    def ok(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{}")

    loop = asyncio.new_event_loop()
    reject = dataclasses.replace(_REJECT)
    sync_t = _rigged(
        reject, ResilientTransport(reject, registry=CollectorRegistry(), clock=constant)
    )
    async_t = _rigged(
        reject, AsyncResilientTransport(reject, registry=CollectorRegistry(), clock=constant)
    )
    assert sync_t.runtime.throttle is not None
    throttle = sync_t.runtime.throttle
    sync_c = httpx.Client(base_url="http://127.0.0.1:9", transport=sync_t)
    async_c = httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=async_t)
    bare_s = httpx.Client(
        base_url="http://127.0.0.1:9", transport=httpx.MockTransport(_refuse_at_transport)
    )
    bare_a = httpx.AsyncClient(
        base_url="http://127.0.0.1:9", transport=httpx.MockTransport(_refuse_at_transport)
    )
    request = sync_c.build_request("GET", PATH)

    def svc(cls: Any, throttled: bool) -> Any:
        extra = {"throttle": ThrottlePolicy()} if throttled else {}
        return cls(
            "bench-overload-cg",
            url="http://user-service:8080",
            transport=httpx.MockTransport(ok),
            clock=constant,
            registry=CollectorRegistry(),
            **extra,
        )

    clients = {
        "sync": svc(ServiceClient, False),
        "sync+t": svc(ServiceClient, True),
        "async": svc(AsyncServiceClient, False),
        "async+t": svc(AsyncServiceClient, True),
    }

    def each(fn: Callable[[], object], *exc: type[BaseException]) -> Callable[[int], None]:
        def run(count: int) -> None:
            for _ in range(count):
                with contextlib.suppress(*exc):
                    fn()

        return run

    def each_async(get: Any, *exc: type[BaseException]) -> Callable[[int], None]:
        async def many(count: int) -> None:
            for _ in range(count):
                with contextlib.suppress(*exc):
                    await get(PATH)

        return lambda count: loop.run_until_complete(many(count))

    runs: dict[str, Callable[[int], None]] = {
        CG_VARIANTS[0]: each(lambda: None),
        CG_VARIANTS[1]: each(throttle.admit),
        CG_VARIANTS[2]: each(lambda: sync_t.handle_request(request), ThrottledError),
        CG_VARIANTS[3]: each(lambda: sync_c.get(PATH), ThrottledError),
        CG_VARIANTS[4]: each(lambda: bare_s.get(PATH), httpx.ConnectError),
        CG_VARIANTS[5]: each_async(async_c.get, ThrottledError),
        CG_VARIANTS[6]: each_async(bare_a.get, httpx.ConnectError),
        CG_VARIANTS[7]: each(lambda: clients["sync"].get(PATH)),
        CG_VARIANTS[8]: each(lambda: clients["sync+t"].get(PATH)),
        CG_VARIANTS[9]: each_async(clients["async"].get),
        CG_VARIANTS[10]: each_async(clients["async+t"].get),
    }
    batches = Batches(n)
    for name in CG_VARIANTS:
        run = runs[name]
        run(30)  # warm
        batches.measure(name, lambda count, run=run: lambda: run(count))
    loop.close()
    batches.write()
    return 0


def instructions(n: int = 100) -> dict[str, float]:
    """Instructions per call of every ``CG_VARIANTS`` entry, counted by callgrind."""
    return per_call("benchmarks.bench_overload", ["--cg-child", str(n)], n, timeout=1800.0)


def render_instructions(per: dict[str, float]) -> str:
    """Markdown table of :func:`instructions`, with the throttle's share of a request."""
    lines = ["| call | instructions |", "| --- | ---: |"]
    lines += [f"| {name} | {value:,.0f} |" for name, value in per.items()]
    for mode, off, on in (
        ("sync", CG_VARIANTS[7], CG_VARIANTS[8]),
        ("async", CG_VARIANTS[9], CG_VARIANTS[10]),
    ):
        extra = per[on] - per[off]
        lines.append(
            f"\nThrottle on, healthy {mode} request: +{extra:,.0f} instructions "
            f"(+{extra / per[off]:.2%} of svcclient's defaults)."
        )
    return "\n".join(lines)


def _contender(
    name: str, srv: CapacityProcess, seconds: float, capacity_rps: float
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        client = _client(name, srv.url)
        async with client:
            await client.get(PATH)  # connect once, off the clock
            srv.reset()
            rate = LOAD * capacity_rps
            outcomes, floor, stats, window = await _offer(
                client, rate, seconds, seconds * WARMUP, srv.stats
            )
            return _summary(outcomes, floor, int(rate * seconds), stats, window)

    result = asyncio.run(main())
    result["label"] = CONTENDERS[name]
    return result


def run(
    quick: bool = False,
    only: tuple[str, ...] | None = None,
    capacity: Capacity = CAPACITY,
) -> dict[str, Any]:
    """Every contender against the same bounded-capacity server; see the module docstring.

    ``capacity`` is the server's shape: the default sheds at a tenth of a served request's
    cost (the hard case); ``shed_time=0`` is a server whose "no" costs no serving capacity
    (a load shedder in front of the workers), where goodput is bounded by the client alone.
    """
    p = _params(quick)
    out: dict[str, Any] = {
        "params": {
            **p,
            "capacity_rps": capacity.rate,
            "load": LOAD,
            "workers": capacity.workers,
            "service_ms": capacity.service_time * 1000.0,
            "shed_ms": capacity.shed_time * 1000.0,
            "queue_limit": capacity.queue_limit,
        },
        "meta": {"python": platform.python_version(), "machine": platform.machine()},
        "contenders": {},
    }
    out["meta"]["loadavg_start"] = os.getloadavg()[0]
    with CapacityProcess(capacity) as srv:
        out["noload"] = asyncio.run(_noload(srv.url, p["noload_requests"]))
        for name in CONTENDERS:
            if name not in (only or (QUICK if quick else CONTENDERS)):
                continue
            out["contenders"][name] = _contender(name, srv, p["seconds"], capacity.rate)
            time.sleep(0.5)  # let the server's queue drain between contenders
    out["rejection_cost"] = _rejection_cost(p["reject_loop"])
    out["meta"]["loadavg_end"] = os.getloadavg()[0]
    out["goals"] = _goals(out)
    return out


def _goals(result: dict[str, Any]) -> dict[str, bool | None]:
    c = result["contenders"]
    noload = result["noload"]["p50_ms"]
    goals: dict[str, bool | None] = {}
    t = c.get("throttle")
    goals["throttle_goodput_ge_90pct"] = None if t is None else t["goodput"] >= 0.9
    goals["throttle_local_rejection_p99_le_1ms_under_load"] = (
        None if t is None or t["local_p99_ms"] is None else t["local_p99_ms"] <= 1.0
    )
    cost = result.get("rejection_cost")
    goals["throttle_local_rejection_p99_le_1ms_isolated"] = (
        None
        if cost is None
        else max(v["p99_us"] for k, v in cost.items() if k.startswith("svcclient")) <= 1000.0
    )
    for name in ("vegas", "gradient2"):
        v = c.get(name)
        goals[f"{name}_admitted_p99_le_2x_noload"] = (
            None
            if v is None or v["admitted_p99_ms"] is None
            else v["admitted_p99_ms"] <= 2 * noload
        )
    return goals


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def render(result: dict[str, Any]) -> str:
    """Markdown: goodput, success, local rejections and latencies per contender."""
    p = result["params"]
    nl = result["noload"]
    lines = [
        f"Server: {p['workers']} workers x {p['service_ms']:g} ms = C {p['capacity_rps']:g} req/s, "
        f"queue {p['queue_limit']}, shedding costs {p['shed_ms']:g} ms of a worker; no-load "
        f"latency p50 {nl['p50_ms']:.1f} ms, p99 {nl['p99_ms']:.1f} ms. Offered {p['load']:g} x C "
        f"open loop for {p['seconds']:g} s. Load average {result['meta']['loadavg_start']:.1f} "
        f"at the start, {result['meta']['loadavg_end']:.1f} at the end.",
        "",
        "| contender | server goodput (of C) | server busy serving / shedding | "
        "received per served | client success | local rejections | "
        "local p50 / p99 / max ms | admitted p50 / p99 ms | ok p50 / p99 ms | 503s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in result["contenders"].values():
        lines.append(
            f"| {entry['label']} | {entry['goodput']:.1%} "
            f"| {entry['busy_serving']:.1%} / {entry['busy_shedding']:.1%} "
            f"| {_f(entry['received_per_served'], '.2f')} | {entry['success_rate']:.1%} "
            f"| {entry['local_rejections']} "
            f"| {_f(entry['local_p50_ms'], '.3f')} / {_f(entry['local_p99_ms'], '.3f')} / "
            f"{_f(entry['local_max_ms'], '.3f')} "
            f"| {_f(entry['admitted_p50_ms'])} / {_f(entry['admitted_p99_ms'])} "
            f"| {_f(entry['ok_p50_ms'])} / {_f(entry['ok_p99_ms'])} "
            f"| {entry['outcomes'].get('status_503', 0)} |"
        )
    lines += [
        "",
        "Local rejections beside the same-loop floor (a bare httpx call whose transport raises "
        f"at once, one per {FLOOR_EVERY} offered requests, same harness and load):",
        "",
        "| contender | local rejections | of them during a GC pass | local p50 / p99 ms | "
        "local p99 outside GC ms | floor probes | floor p50 / p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in result["contenders"].values():
        lines.append(
            f"| {entry['label']} | {entry['local_rejections']} | {entry['local_during_gc']} "
            f"| {_f(entry['local_p50_ms'], '.3f')} / {_f(entry['local_p99_ms'], '.3f')} "
            f"| {_f(entry['local_no_gc_p99_ms'], '.3f')} | {entry['floor_probes']} "
            f"| {_f(entry['floor_p50_ms'], '.3f')} / {_f(entry['floor_p99_ms'], '.3f')} |"
        )
    cost = result.get("rejection_cost")
    if cost:
        lines += [
            "",
            "A rejected call in a hot loop (no server), timed from the call to its except "
            "clause, beside baselines under the same harness:",
            "",
            "| call | p50 µs | p99 µs | max µs | GC passes |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, v in cost.items():
            lines.append(
                f"| {name} | {v['p50_us']:.1f} | {v['p99_us']:.1f} | {v['max_us']:.0f} "
                f"| {v['gc_passes']:.0f} |"
            )
    lines.append("")
    for goal, ok in result["goals"].items():
        lines.append(f"- {goal}: {'n/a' if ok is None else 'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="svcclient under overload (3 x capacity)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated: " + ",".join(CONTENDERS))
    parser.add_argument(
        "--instructions", action="store_true", help="callgrind counts of the rejection path"
    )
    parser.add_argument(
        "--shed-ms",
        type=float,
        default=CAPACITY.shed_time * 1000.0,
        help="worker time a 503 costs the server (0: shedding is free)",
    )
    parser.add_argument("--cg-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cg_child:
        return _cg_child(args.cg_child)
    if args.instructions:
        print(render_instructions(instructions()))
        return 0
    only = tuple(args.only.split(",")) if args.only else None
    capacity = dataclasses.replace(CAPACITY, shed_time=args.shed_ms / 1000.0)
    print(render(run(args.quick, only, capacity)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
