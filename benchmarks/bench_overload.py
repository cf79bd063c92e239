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
* the server's no-load latency (one request at a time, before the runs) for reference;
* a throttled call's latency in a hot loop with no server and no load, sync and async
  (in the open-loop run the client is idle between arrivals and every call starts cold).

Goals (issue 17): with throttling, goodput >= 90 % of C and local rejections <= 1 ms; with
the adaptive limit, admitted calls' p99 <= 2 x the server's no-load latency.

Run ``python -m benchmarks.bench_overload [--quick]``; ``run(quick)`` returns a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

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

Outcome = tuple[str, float]  # (kind, seconds)


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
) -> tuple[list[Outcome], dict[str, int], float]:
    """``rate`` requests per second for ``seconds``, open loop; every task bounded.

    Returns the outcomes, the server's counters over the steady part (after ``warmup``
    seconds, so the first service times are not counted as lost capacity) and its length.
    """
    outcomes: list[Outcome] = []

    async def one() -> None:
        start = time.perf_counter()
        try:
            response = await client.get(PATH)
            kind = "ok" if response.status_code == 200 else f"status_{response.status_code}"
        except Exception as exc:
            kind = _kind(exc)
        outcomes.append((kind, time.perf_counter() - start))

    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter()
    first: dict[str, int] | None = None
    t_first = t0
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if first is None and time.perf_counter() - t0 >= warmup:
            first, t_first = stats(), time.perf_counter()
        tasks.append(asyncio.create_task(one()))
    last, t_last = stats(), time.perf_counter()
    assert first is not None
    steady = {k: last[k] - first[k] for k in ("served", "shed")}
    steady["max_queue"] = last["max_queue"]
    # Every request is bounded by its client's timeouts (svcclient: the 3 s deadline; httpx:
    # 5 s per phase); this wait is the last resort.
    _, pending = await asyncio.wait(tasks, timeout=30.0)
    for task in pending:
        task.cancel()
    return outcomes, steady, t_last - t_first


def _ms(values: list[float], q: float) -> float | None:
    return percentile(values, q) * 1000.0 if values else None


def _summary(
    outcomes: list[Outcome], offered: int, stats: dict[str, int], window: float
) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for kind, _ in outcomes:
        kinds[kind] = kinds.get(kind, 0) + 1
    local = [s for k, s in outcomes if k in LOCAL]
    admitted = [s for k, s in outcomes if k not in LOCAL]
    ok = [s for k, s in outcomes if k == "ok"]
    served_rate = stats["served"] / window
    return {
        "offered": offered,
        "finished": len(outcomes),
        "outcomes": kinds,
        "server": stats,
        "window_s": window,
        "goodput": served_rate / CAPACITY.rate,
        "success_rate": len(ok) / offered if offered else 0.0,
        "local_rejections": len(local),
        "local_p50_ms": _ms(local, 50),
        "local_p99_ms": _ms(local, 99),
        "local_max_ms": max(local) * 1000.0 if local else None,
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


def _rejection_cost(n: int) -> dict[str, dict[str, float]]:
    """A throttled call's latency in a hot loop (no server, no load), sync and async."""
    config = ServiceConfig(
        "bench-overload-reject",
        url="http://127.0.0.1:9",
        throttle=ThrottlePolicy(min_requests=0, max_reject_probability=1.0),
    )

    def rigged(transport: ResilientTransport | AsyncResilientTransport) -> None:
        throttle = transport.runtime.throttle
        assert throttle is not None
        for _ in range(100):
            throttle.record(False)
        throttle.rng = lambda: 0.0  # every call loses the draw

    def summary(lat: list[float]) -> dict[str, float]:
        return {"p50_us": percentile(lat, 50) * 1e6, "p99_us": percentile(lat, 99) * 1e6}

    sync_transport = ResilientTransport(config, registry=CollectorRegistry())
    rigged(sync_transport)
    lat: list[float] = []
    with httpx.Client(base_url="http://127.0.0.1:9", transport=sync_transport) as client:
        for _ in range(n):
            start = time.perf_counter()
            with contextlib.suppress(ThrottledError):
                client.get(PATH)
            lat.append(time.perf_counter() - start)
    out = {"sync": summary(lat)}

    async def run_async() -> list[float]:
        transport = AsyncResilientTransport(config, registry=CollectorRegistry())
        rigged(transport)
        lat: list[float] = []
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=transport) as c:
            for _ in range(n):
                start = time.perf_counter()
                with contextlib.suppress(ThrottledError):
                    await c.get(PATH)
                lat.append(time.perf_counter() - start)
        return lat

    out["async"] = summary(asyncio.run(run_async()))
    return out


def _contender(name: str, srv: CapacityProcess, seconds: float) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        client = _client(name, srv.url)
        async with client:
            await client.get(PATH)  # connect once, off the clock
            srv.reset()
            rate = LOAD * CAPACITY.rate
            outcomes, stats, window = await _offer(
                client, rate, seconds, seconds * WARMUP, srv.stats
            )
            return _summary(outcomes, int(rate * seconds), stats, window)

    result = asyncio.run(main())
    result["label"] = CONTENDERS[name]
    return result


def run(quick: bool = False, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every contender against the same bounded-capacity server; see the module docstring."""
    p = _params(quick)
    out: dict[str, Any] = {
        "params": {
            **p,
            "capacity_rps": CAPACITY.rate,
            "load": LOAD,
            "workers": CAPACITY.workers,
            "service_ms": CAPACITY.service_time * 1000.0,
            "shed_ms": CAPACITY.shed_time * 1000.0,
            "queue_limit": CAPACITY.queue_limit,
        },
        "meta": {"python": platform.python_version(), "machine": platform.machine()},
        "contenders": {},
    }
    with CapacityProcess(CAPACITY) as srv:
        out["noload"] = asyncio.run(_noload(srv.url, p["noload_requests"]))
        for name in CONTENDERS:
            if name not in (only or (QUICK if quick else CONTENDERS)):
                continue
            out["contenders"][name] = _contender(name, srv, p["seconds"])
            time.sleep(0.5)  # let the server's queue drain between contenders
    out["rejection_cost"] = _rejection_cost(p["reject_loop"])
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
        None if cost is None else max(v["p99_us"] for v in cost.values()) <= 1000.0
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
        f"open loop for {p['seconds']:g} s.",
        "",
        "| contender | server goodput (of C) | client success | local rejections | "
        "local p50 / p99 / max ms | admitted p50 / p99 ms | ok p50 / p99 ms | 503s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in result["contenders"].values():
        lines.append(
            f"| {entry['label']} | {entry['goodput']:.1%} | {entry['success_rate']:.1%} "
            f"| {entry['local_rejections']} "
            f"| {_f(entry['local_p50_ms'], '.3f')} / {_f(entry['local_p99_ms'], '.3f')} / "
            f"{_f(entry['local_max_ms'], '.3f')} "
            f"| {_f(entry['admitted_p50_ms'])} / {_f(entry['admitted_p99_ms'])} "
            f"| {_f(entry['ok_p50_ms'])} / {_f(entry['ok_p99_ms'])} "
            f"| {entry['outcomes'].get('status_503', 0)} |"
        )
    cost = result.get("rejection_cost")
    if cost:
        lines.append("")
        lines.append(
            "Throttled call in a hot loop (no load): "
            + "; ".join(
                f"{mode} p50 {v['p50_us']:.0f} µs, p99 {v['p99_us']:.0f} µs"
                for mode, v in cost.items()
            )
        )
    lines.append("")
    for goal, ok in result["goals"].items():
        lines.append(f"- {goal}: {'n/a' if ok is None else 'met' if ok else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="svcclient under overload (3 x capacity)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help="comma-separated: " + ",".join(CONTENDERS))
    args = parser.parse_args(argv)
    only = tuple(args.only.split(",")) if args.only else None
    print(render(run(args.quick, only)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
