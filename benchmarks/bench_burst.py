"""Bursts: 1,000 concurrent GETs to one loopback server, counted, on each wire.

Contenders: bare ``httpx.AsyncClient``; ``AsyncServiceClient`` with defaults (httpx wire,
3 s deadline); ``AsyncServiceClient(wire="aiohttp")`` with defaults otherwise; and, for
scale, a bare ``aiohttp.ClientSession``. The server is the canned-answer server in a child
process (``benchmarks._servers``), so it is never the bottleneck. Each contender warms up
with 20 requests; then the bursts are interleaved (each round one burst per contender, the
order turning each round); every burst is bounded by ``limit`` seconds
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

    gets: dict[str, Callable[[], Awaitable[bool]]] = {
        name: httpx_get(client) for name, client in clients.items()
    }
    if has_aiohttp:
        gets["bare aiohttp.ClientSession (reference)"] = aio_get
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in gets}
    try:
        for get in gets.values():
            await _burst(get, 20, limit)  # warm-up: the pool holds its keep-alive connections
        # Interleaved: each round gives every contender one burst, the order turning by
        # one each round, so a burst of load from elsewhere hits them alike.
        names = list(gets)
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out[name].append(await _one_burst(gets[name], limit, accepted))
    finally:
        for client in clients.values():
            await client.aclose()
        if has_aiohttp:
            await session.close()
    bare = out["bare httpx.AsyncClient"]
    return {
        name: {
            "succeeded": min(r["succeeded"] for r in runs),
            # bare httpx's wall time over this one's, round by round (the same round, so
            # the same machine load); only rounds where both answered every request
            "speedup_over_bare": _ratios(
                [
                    b["wall_s"] / r["wall_s"]
                    for b, r in zip(bare, runs, strict=True)
                    if b["succeeded"] == BURST and r["succeeded"] == BURST
                ]
            ),
            "bare_failed_rounds": sum(1 for b in bare if b["succeeded"] != BURST),
            "wall_s_best": min(r["wall_s"] for r in runs),
            "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            "wall_s_worst": max(r["wall_s"] for r in runs),
            "new_connections": max(r["new_connections"] for r in runs),
            "errors": runs[-1]["errors"],
        }
        for name, runs in out.items()
    }


def _ratios(values: list[float]) -> dict[str, float | int] | None:
    if not values:
        return None
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "rounds": len(values),
    }


async def _one_burst(
    get: Callable[[], Awaitable[bool]], limit: float, accepted: Callable[[], int]
) -> dict[str, Any]:
    before = accepted()
    result = await _burst(get, BURST, limit)
    result["new_connections"] = accepted() - before
    return result


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
    lines = [
        f"| {result['requests']:,} concurrent GETs | succeeded | new TCP connections "
        "| wall s min / median / max | speed-up over bare httpx, same round: min / median / "
        "max (rounds) | errors (last run) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['succeeded']:,} | {r['new_connections']:,} "
            f"| {r['wall_s_best']:.2f} / {r['wall_s_median']:.2f} / {r['wall_s_worst']:.2f} "
            f"| {_speedup(r)} | {r['errors'] or '-'} |"
        )
    failed = rows["bare httpx.AsyncClient"].get("bare_failed_rounds", 0)
    if failed:
        lines += ["", f"Bare httpx lost requests in {failed} round(s); those rounds give no ratio."]
    return "\n".join(lines)


def _speedup(row: dict[str, Any]) -> str:
    s = row.get("speedup_over_bare")
    if not s:
        return "-"
    return f"{s['min']:.1f} / {s['median']:.1f} / {s['max']:.1f} ({s['rounds']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None, help="bursts per contender")
    args = parser.parse_args(argv)
    print(render(run(args.quick, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
