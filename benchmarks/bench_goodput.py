"""Goodput under faults: three real local servers, one down, one sometimes slow, one healthy.

Claim 4 of the benchmark issue. A child process (see ``_servers``) runs three
``FaultServer`` s on 127.0.0.2, .3 and .4, all on the same port:

* 127.0.0.2 refuses connections (nothing listens);
* 127.0.0.3 answers exactly 10 % of its requests (evenly spread) after 1 s;
* 127.0.0.4 is healthy.

Each contender sends the same ``N`` GET requests (quick 300, full 2,000) from a fixed number
of concurrent workers (threads for sync clients, tasks for async ones), bounded in count and
in wall time; the servers' fault scripts and counters are reset between contenders:

* ``(ref)`` bare httpx to the healthy server only - the floor;
* ``(a)`` bare ``httpx.Client``, round robin over the three;
* ``(b)`` tenacity ``@retry`` + pybreaker around (a) - what users write today;
* ``(c)`` ``ServiceClient`` with defaults (round robin, outlier ejection, retries, breaker);
* ``(d)`` ``AsyncServiceClient`` with ``least_loaded`` balancing and hedging;
* ``(k)`` bare httpx to a ClusterIP: a kube-proxy stand-in (``KubeProxy``, round robin
  per new connection) on 127.0.0.10 in front of the three; keep-alive pins the client to
  whichever pod its connection landed on;
* ``(rr)`` ``ServiceClient`` with defaults but round-robin balancing (the old default).

``--sequential`` runs one worker (the issue's "300 sequential GETs", sync): the goal for
``(c)`` there is 100 % success, p99 <= 50 ms and a run no longer than bare httpx's.

svcclient gets the three addresses the way DNS would give them: the client is built for
``http://127.0.0.2:PORT`` and the balancer is handed the three endpoints
(``runtime.balancer.set_endpoints``), so no DNS server is needed.

Reported per contender: success rate, p50 / p99 / max latency of every request (failed ones
at the time they failed), run time, requests each server saw, and 101 latency quantiles of
the successful requests (for the chart).

Run ``python -m benchmarks.bench_goodput [--quick]``; ``run(quick)`` returns a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from benchmarks._servers import ServerProcess, free_common_port
from benchmarks._timing import percentile, quantiles
from svcclient import (
    AsyncServiceClient,
    BalancingPolicy,
    Endpoint,
    HedgePolicy,
    ServiceClient,
    ServiceConfig,
)

__all__ = ["CONTENDERS", "main", "render", "run"]

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PATH = "/items/7"
SLOW_FRACTION = 0.1
SLOW_AFTER = 1.0
HEDGE_DELAY = 0.01
CONTENDERS = {
    "ref": "(ref) bare httpx, healthy server only",
    "a": "(a) bare httpx, round robin",
    "b": "(b) tenacity + pybreaker, round robin",
    "c": "(c) svcclient defaults",
    "d": f"(d) svcclient least_loaded + hedging ({HEDGE_DELAY * 1000:g} ms)",
    "k": "(k) bare httpx, ClusterIP (kube-proxy stand-in)",
    "rr": "(rr) svcclient defaults with round_robin",
}
VIP = "127.0.0.10"

Outcome = tuple[bool, float]  # (succeeded, seconds)


def _params(quick: bool, sequential: bool = False) -> dict[str, Any]:
    workers = 1 if sequential else 4
    if quick or sequential:
        return {"requests": 300, "workers": workers, "max_seconds": 60.0}
    return {"requests": 2000, "workers": workers, "max_seconds": 150.0}


def _summary(outcomes: list[Outcome], wanted: int, elapsed: float, hit: bool) -> dict[str, Any]:
    lat = [s for _, s in outcomes]
    ok = [s for good, s in outcomes if good]
    ms = 1000.0
    return {
        "requests": wanted,
        "sent": len(outcomes),
        "succeeded": len(ok),
        "success_rate": len(ok) / wanted if wanted else 0.0,
        "p50_ms": percentile(lat, 50) * ms,
        "p99_ms": percentile(lat, 99) * ms,
        "max_ms": max(lat) * ms if lat else float("nan"),
        "run_s": elapsed,
        "time_bound_hit": hit,
        "ok_quantiles_ms": [q * ms for q in quantiles(ok)],
    }


def _run_threads(
    call: Callable[[], bool], requests: int, workers: int, max_seconds: float
) -> tuple[list[Outcome], float, bool]:
    """``requests`` calls from ``workers`` threads; none starts after ``max_seconds``."""
    counter = itertools.count()
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    t0 = time.perf_counter()
    stop_at = t0 + max_seconds
    hit = [False]

    def worker() -> None:
        while next(counter) < requests:
            if time.perf_counter() > stop_at:
                hit[0] = True
                return
            start = time.perf_counter()
            try:
                good = call()
            except Exception:
                good = False
            took = time.perf_counter() - start
            with lock:
                outcomes.append((good, took))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        # Every request is bounded by its client's timeouts; this join is the last resort.
        t.join(max(stop_at - time.perf_counter(), 0.0) + 30.0)
    return outcomes, time.perf_counter() - t0, hit[0]


async def _run_tasks(
    call: Callable[[], Awaitable[bool]], requests: int, workers: int, max_seconds: float
) -> tuple[list[Outcome], float, bool]:
    counter = itertools.count()
    outcomes: list[Outcome] = []
    t0 = time.perf_counter()
    stop_at = t0 + max_seconds
    hit = [False]

    async def worker() -> None:
        while next(counter) < requests:
            if time.perf_counter() > stop_at:
                hit[0] = True
                return
            start = time.perf_counter()
            try:
                good = await call()
            except Exception:
                good = False
            outcomes.append((good, time.perf_counter() - start))

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), max_seconds + 30.0)
    return outcomes, time.perf_counter() - t0, hit[0]


def _round_robin(urls: list[str]) -> Callable[[], str]:
    cycle = itertools.cycle(urls)
    lock = threading.Lock()

    def next_url() -> str:
        with lock:
            return next(cycle)

    return next_url


def _bare(urls: list[str], p: dict[str, Any]) -> tuple[list[Outcome], float, bool]:
    next_url = _round_robin(urls)
    with httpx.Client() as client:

        def call() -> bool:
            return client.get(next_url() + PATH).status_code == 200

        return _run_threads(call, p["requests"], p["workers"], p["max_seconds"])


def _diy(urls: list[str], p: dict[str, Any]) -> tuple[list[Outcome], float, bool]:
    import pybreaker
    import tenacity

    next_url = _round_robin(urls)
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    with httpx.Client() as client:

        @tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_random_exponential(multiplier=0.1, max=1.0),
            retry=(
                tenacity.retry_if_exception_type(httpx.TransportError)
                | tenacity.retry_if_result(lambda r: r.status_code in (502, 503, 504))
            ),
            reraise=True,
        )
        def get() -> httpx.Response:
            response: httpx.Response = breaker.call(client.get, next_url() + PATH)
            return response

        def call() -> bool:
            return get().status_code == 200

        return _run_threads(call, p["requests"], p["workers"], p["max_seconds"])


def _endpoints(port: int) -> list[Endpoint]:
    return [Endpoint(h, port) for h in HOSTS]


def _cluster_ip(port: int, p: dict[str, Any]) -> tuple[list[Outcome], float, bool]:
    from svcclient.testing._kubeproxy import KubeProxy

    with KubeProxy(VIP, backends=[(h, port) for h in HOSTS]) as vip:
        return _bare([f"http://{VIP}:{vip.port}"], p)


def _ours(
    port: int, p: dict[str, Any], balancing: BalancingPolicy | None = None
) -> tuple[list[Outcome], float, bool]:
    config = ServiceConfig("bench-goodput-c", url=f"http://{HOSTS[0]}:{port}")
    if balancing is not None:
        config = config.with_overrides(balancing=balancing)
    client = ServiceClient(config, registry=CollectorRegistry())
    client.resilient.runtime.balancer.set_endpoints(_endpoints(port))
    with client:

        def call() -> bool:
            return client.get(PATH).status_code == 200

        return _run_threads(call, p["requests"], p["workers"], p["max_seconds"])


def _hedged(port: int, p: dict[str, Any]) -> tuple[list[Outcome], float, bool]:
    async def main() -> tuple[list[Outcome], float, bool]:
        client = AsyncServiceClient(
            ServiceConfig(
                "bench-goodput-d",
                url=f"http://{HOSTS[0]}:{port}",
                balancing=BalancingPolicy(strategy="least_loaded"),
                hedge=HedgePolicy(delay=HEDGE_DELAY),
            ),
            registry=CollectorRegistry(),
        )
        client.resilient.runtime.balancer.set_endpoints(_endpoints(port))
        async with client:

            async def call() -> bool:
                return (await client.get(PATH)).status_code == 200

            return await _run_tasks(call, p["requests"], p["workers"], p["max_seconds"])

    return asyncio.run(main())


def run(
    quick: bool, only: tuple[str, ...] | None = None, sequential: bool = False
) -> dict[str, Any]:
    """Every contender against the same three servers; see the module docstring."""
    p = _params(quick, sequential)
    port = free_common_port(HOSTS)
    specs = [
        {"kind": "fault", "host": HOSTS[0], "port": port, "fault": "refuse"},
        {
            "kind": "fault",
            "host": HOSTS[1],
            "port": port,
            "fault": "slow",
            "fraction": SLOW_FRACTION,
            "after": SLOW_AFTER,
        },
        {"kind": "fault", "host": HOSTS[2], "port": port, "fault": "ok"},
    ]
    urls = [f"http://{h}:{port}" for h in HOSTS]
    plans: dict[str, Callable[[], tuple[list[Outcome], float, bool]]] = {
        "ref": lambda: _bare([urls[2]], p),
        "a": lambda: _bare(urls, p),
        "b": lambda: _diy(urls, p),
        "c": lambda: _ours(port, p),
        "d": lambda: _hedged(port, p),
        "k": lambda: _cluster_ip(port, p),
        "rr": lambda: _ours(port, p, BalancingPolicy(strategy="round_robin")),
    }
    if importlib.util.find_spec("pybreaker") is None:  # pragma: no cover - dev dependency
        del plans["b"]
    results: dict[str, Any] = {}
    with ServerProcess(specs) as servers:
        for key, plan in plans.items():
            if only is not None and key not in only:
                continue
            servers.reset()
            outcomes, elapsed, hit = plan()
            entry = _summary(outcomes, p["requests"], elapsed, hit)
            entry["label"] = CONTENDERS[key]
            entry["server_requests"] = servers.command("counts")
            results[key] = entry
    return {
        "params": {
            **p,
            "port": port,
            "servers": {
                HOSTS[0]: "refuses connections",
                HOSTS[1]: f"{SLOW_FRACTION:.0%} of requests after {SLOW_AFTER:g} s",
                HOSTS[2]: "healthy",
            },
            "hedge_delay_s": HEDGE_DELAY,
        },
        "contenders": results,
    }


def render(result: dict[str, Any]) -> str:
    """Markdown: success rate, latency percentiles and run time per contender."""
    p = result["params"]
    lines = [
        f"{p['requests']} GET requests, {p['workers']} concurrent workers; "
        f"{HOSTS[0]} refuses, {HOSTS[1]} answers {SLOW_FRACTION:.0%} after {SLOW_AFTER:g} s, "
        f"{HOSTS[2]} healthy.",
        "",
        "| contender | success | p50 ms | p99 ms | max ms | run s | requests per server "
        "(.2/.3/.4) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for entry in result["contenders"].values():
        seen = "/".join(str(v) for v in entry["server_requests"].values())
        bound = " (time bound hit)" if entry["time_bound_hit"] else ""
        lines.append(
            f"| {entry['label']} | {entry['success_rate']:.2%}{bound} | {entry['p50_ms']:.1f} "
            f"| {entry['p99_ms']:.1f} | {entry['max_ms']:.1f} | {entry['run_s']:.2f} | {seen} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="svcclient goodput under faults")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sequential", action="store_true", help="one worker, 300 GETs")
    parser.add_argument("--only", default=None, help="comma-separated: ref,a,b,c,d,k,rr")
    args = parser.parse_args(argv)
    only = tuple(args.only.split(",")) if args.only else None
    print(render(run(args.quick, only, args.sequential)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
