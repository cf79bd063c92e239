"""Bursts: 1,000 concurrent GETs to one loopback server, counted, on each wire.

Contenders: bare ``httpx.AsyncClient``; ``AsyncServiceClient`` with defaults (httpx wire,
3 s deadline); ``AsyncServiceClient(wire="aiohttp")`` with defaults otherwise; and, for
scale, a bare ``aiohttp.ClientSession``. The server is the canned-answer server in a child
process (``benchmarks._servers``), so it is never the bottleneck. Each contender warms up
with 20 requests, then fires the burst; every burst is bounded by ``limit`` seconds
(requests still running then count as unfinished). The verdicts are counts
(succeeded / 1,000), never wall time; wall time is reported for the speed comparison,
and the new TCP connections each burst made are counted on the server's side (accepted
connections), so pool churn shows as a count.

Run ``python -m benchmarks.bench_burst [--quick]``; ``run(quick)`` returns a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from benchmarks._servers import ServerProcess
from svcclient import AsyncServiceClient, ServiceConfig

__all__ = ["BURST", "main", "render", "run"]

BURST = 1000


async def _burst(get: Callable[[], Awaitable[bool]], n: int, limit: float) -> dict[str, Any]:
    errors: Counter[str] = Counter()

    async def one() -> bool:
        try:
            return await get()
        except Exception as exc:
            errors[type(exc).__name__] += 1
            return False

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=limit)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
        errors["unfinished"] = len(pending)
    ok = sum(1 for t in done if not t.cancelled() and t.result())
    return {"succeeded": ok, "wall_s": time.perf_counter() - t0, "errors": dict(errors)}


async def _contenders(
    url: str, repeats: int, limit: float, accepted: Callable[[], int]
) -> dict[str, Any]:
    def httpx_get(client: httpx.AsyncClient) -> Callable[[], Awaitable[bool]]:
        async def get() -> bool:
            return (await client.get("/items/1")).status_code == 200

        return get

    clients: dict[str, Any] = {
        "bare httpx.AsyncClient": httpx.AsyncClient(base_url=url),
        "svcclient defaults (httpx wire)": AsyncServiceClient(
            ServiceConfig("bench-burst", url=url), registry=CollectorRegistry()
        ),
    }
    has_aiohttp = importlib.util.find_spec("aiohttp") is not None
    if has_aiohttp:
        import aiohttp

        clients['svcclient wire="aiohttp"'] = AsyncServiceClient(
            ServiceConfig("bench-burst-aiohttp", url=url, wire="aiohttp"),
            registry=CollectorRegistry(),
        )
        session = aiohttp.ClientSession(base_url=url)

        async def aio_get() -> bool:
            async with session.get("/items/1") as r:
                await r.read()
                return r.status == 200

    out: dict[str, Any] = {}
    try:
        for name, client in clients.items():
            out[name] = await _runs(httpx_get(client), repeats, limit, accepted)
        if has_aiohttp:
            name = "bare aiohttp.ClientSession (reference)"
            out[name] = await _runs(aio_get, repeats, limit, accepted)
    finally:
        for client in clients.values():
            await client.aclose()
        if has_aiohttp:
            await session.close()
    return {
        name: {
            "succeeded": min(r["succeeded"] for r in runs),
            "wall_s_best": min(r["wall_s"] for r in runs),
            "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            "wall_s_worst": max(r["wall_s"] for r in runs),
            "new_connections": max(r["new_connections"] for r in runs),
            "errors": runs[-1]["errors"],
        }
        for name, runs in out.items()
    }


async def _runs(
    get: Callable[[], Awaitable[bool]], repeats: int, limit: float, accepted: Callable[[], int]
) -> list[dict[str, Any]]:
    await _burst(get, 20, limit)  # warm-up: the pool holds its keep-alive connections
    runs = []
    for _ in range(repeats):
        before = accepted()
        result = await _burst(get, BURST, limit)
        result["new_connections"] = accepted() - before
        runs.append(result)
    return runs


def run(quick: bool, repeats: int | None = None) -> dict[str, Any]:
    """Succeeded of 1,000 (worst over repeats), wall seconds (best, median, worst) and new
    TCP connections per burst (most over repeats, counted by the server) per contender."""
    default_repeats, limit = (1, 15.0) if quick else (3, 60.0)
    with ServerProcess([{"kind": "canned", "host": "127.0.0.1"}]) as srv:

        def accepted() -> int:
            return sum(srv.command("connections").values())

        result = asyncio.run(_contenders(srv.urls[0], repeats or default_repeats, limit, accepted))
    return {"requests": BURST, "time_limit_s": limit, "contenders": result}


def render(result: dict[str, Any]) -> str:
    """Markdown: succeeded, wall time and speed-up over bare httpx."""
    rows = result["contenders"]
    bare = rows["bare httpx.AsyncClient"]["wall_s_best"]
    lines = [
        f"| {result['requests']:,} concurrent GETs | succeeded | new TCP connections "
        "| wall s min / median / max | speed-up over bare httpx | errors (last run) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['succeeded']:,} | {r['new_connections']:,} "
            f"| {r['wall_s_best']:.2f} / {r['wall_s_median']:.2f} / {r['wall_s_worst']:.2f} "
            f"| {bare / r['wall_s_best']:.1f} | {r['errors'] or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None, help="bursts per contender")
    args = parser.parse_args(argv)
    print(render(run(args.quick, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
