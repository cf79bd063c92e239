"""Scale: endpoint-choice cost vs endpoint count, memory over many requests, 1,000 at once.

Claim 5 of the benchmark issue:

* **pick cost** of ``LoadBalancer`` (round robin and least loaded) with 1, 10, 100 and 1,000
  endpoints: ``pick()`` alone and the per-attempt cycle ``pick() + on_start() + on_end()``.
* **memory** over ``N`` requests (quick 20,000, full 100,000) through one ``ServiceClient``
  with the default pipeline on a MockTransport; 1 % of answers are 503 so the retry path
  runs too (its backoff sleeps are skipped), and paths carry 500 distinct ids so the route
  normaliser works. After a warm-up, live memory blocks (``sys.getallocatedblocks`` after
  a full GC) are sampled at ten checkpoints - the line must be flat - and a shorter window
  runs under ``tracemalloc`` to give the growth in bytes and its top allocation sites.
* **1,000 concurrent requests** through one ``AsyncServiceClient`` against uvicorn (a
  minimal ASGI app, child process, 127.0.0.1): all must succeed; wall time next to a bare
  ``httpx.AsyncClient`` doing the same.

Run ``python -m benchmarks.bench_scale [--quick]``; ``run(quick)`` returns a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import itertools
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from benchmarks._servers import ROOT, ServerProcess
from benchmarks._timing import Runner, interleave, sync_runner
from svcclient import AsyncServiceClient, BreakerPolicy, ServiceClient, ServiceConfig
from svcclient._balancing.balancer import BalancingPolicy, LoadBalancer
from svcclient._balancing.outlier import OutlierPolicy
from svcclient._endpoint import Endpoint

__all__ = ["main", "render", "run"]

SIZES = (1, 10, 100, 1000)
STRATEGIES = ("round_robin", "least_loaded")
BASE = "http://user-service:8080"
CONCURRENT = 1000

# Memory guard: after warm-up, live blocks may not grow by more than this many per
# 1,000 requests (caches are bounded, so a leak of even one object per request shows).
MAX_BLOCKS_PER_1K = 50.0


def _pick_cost(quick: bool) -> dict[str, Any]:
    number, rounds, max_s = (2000, 5, 6.0) if quick else (10000, 15, 30.0)
    contenders: dict[str, Runner] = {}
    for strategy in STRATEGIES:
        for size in SIZES:
            lb = LoadBalancer(BalancingPolicy(strategy, seed=1), OutlierPolicy())  # type: ignore[arg-type]
            lb.set_endpoints(
                [Endpoint(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 8080) for i in range(size)]
            )
            pick, start, end = lb.pick, lb.on_start, lb.on_end

            def cycle(pick: Any = pick, start: Any = start, end: Any = end) -> None:
                ep = pick()
                start(ep)
                end(ep, 0.001, False)

            contenders[f"{strategy} {size} pick"] = sync_runner(pick)
            contenders[f"{strategy} {size} cycle"] = sync_runner(cycle)
    cmp = interleave(contenders, number=number, rounds=rounds, max_seconds=max_s)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for strategy in STRATEGIES:
        table[strategy] = {}
        for size in SIZES:
            table[strategy][str(size)] = {
                kind: cmp.per_op[f"{strategy} {size} {kind}"].scaled(1e6).min
                for kind in ("pick", "cycle")
            }
    return {"unit": "us (best round)", "rounds": cmp.rounds, "by_strategy": table}


class _FlakyServer:
    """200 for most requests; every 100th answer is a 503 (retried by the pipeline)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        status = 503 if self.count % 100 == 0 else 200
        return httpx.Response(status, content=b'{"ok":true}')


def _live_blocks() -> int:
    gc.collect()
    return sys.getallocatedblocks()


def _memory(quick: bool) -> dict[str, Any]:
    total, traced, max_s = (20_000, 1_000, 25.0) if quick else (100_000, 10_000, 300.0)
    server = _FlakyServer()
    client = ServiceClient(
        ServiceConfig("bench-scale-memory", url=BASE),
        transport=httpx.MockTransport(server),
        registry=CollectorRegistry(),
        sleep=lambda _s: None,
    )
    paths = [f"/users/{i}" for i in range(500)]
    cycle = itertools.cycle(paths)
    statuses: dict[int, int] = {}

    def send(n: int) -> None:
        for _ in range(n):
            status = client.get(next(cycle)).status_code
            statuses[status] = statuses.get(status, 0) + 1

    try:
        send(2_000)  # warm-up: caches, metric children, pools
        checkpoints: list[tuple[int, int]] = [(0, _live_blocks())]
        step = total // 10
        done = 0
        t0 = time.perf_counter()
        hit = False
        while done < total:
            if time.perf_counter() - t0 > max_s:
                hit = True
                break
            send(step)
            done += step
            checkpoints.append((done, _live_blocks()))
        elapsed = time.perf_counter() - t0
        # The first tenth may still fill bounded caches; judge growth after it.
        first_n, first_b = checkpoints[1] if len(checkpoints) > 2 else checkpoints[0]
        last_n, last_b = checkpoints[-1]
        per_1k = (last_b - first_b) / max(last_n - first_n, 1) * 1000

        tracemalloc.start(5)
        try:
            gc.collect()
            before = tracemalloc.take_snapshot()
            send(traced)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        diff = [d for d in after.compare_to(before, "lineno") if d.size_diff > 0]
        grown = sum(d.size_diff for d in after.compare_to(before, "filename"))
        top = [
            {"where": str(d.traceback[0]), "bytes": d.size_diff, "blocks": d.count_diff}
            for d in diff[:3]
        ]
    finally:
        client.close()
    return {
        "requests": done,
        "requests_wanted": total,
        "time_bound_hit": hit,
        "run_s": elapsed,
        "us_per_request": elapsed / max(done, 1) * 1e6,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "blocks_checkpoints": checkpoints,
        "blocks_growth_per_1k": per_1k,
        "blocks_bound_per_1k": MAX_BLOCKS_PER_1K,
        "traced_requests": traced,
        "traced_growth_bytes": grown,
        "traced_top": top,
    }


async def _burst(
    client: httpx.AsyncClient, n: int, timeout: float
) -> tuple[int, float, dict[str, int]]:
    """``n`` requests at once; (succeeded, wall seconds, errors by type). Bounded by
    ``timeout``: requests still running then are cancelled and count as "unfinished"."""
    errors: dict[str, int] = {}

    async def one() -> bool:
        try:
            response = await client.get("/items/1")
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return False
        return response.status_code == 200

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)
        errors["unfinished"] = len(pending)
    ok = sum(1 for t in done if not t.cancelled() and t.result())
    return ok, time.perf_counter() - t0, errors


async def _bursts(url: str, repeats: int, limit: float) -> dict[str, Any]:
    # Both sides get a 30 s budget: the question is whether 1,000 requests at once get
    # through one client, not whether they fit the default 3 s deadline.
    bare = httpx.AsyncClient(base_url=url, timeout=30.0)
    ours = AsyncServiceClient(
        ServiceConfig(
            "bench-scale-burst",
            url=url,
            deadline=30.0,
            timeout=10.0,
            breaker=BreakerPolicy(window_duration=20.0),
        ),
        registry=CollectorRegistry(),
    )
    rows: dict[str, list[tuple[int, float, dict[str, int]]]] = {"httpx": [], "svcclient": []}
    try:
        await _burst(bare, 20, limit)  # open connections, import lazily loaded code
        await _burst(ours, 20, limit)
        for _ in range(repeats):
            rows["httpx"].append(await _burst(bare, CONCURRENT, limit))
            rows["svcclient"].append(await _burst(ours, CONCURRENT, limit))
    finally:
        await bare.aclose()
        await ours.aclose()
    return {
        name: {
            "succeeded": min(ok for ok, _, _ in runs),
            "wall_s_best": min(s for _, s, _ in runs),
            "wall_s_worst": max(s for _, s, _ in runs),
            "errors": runs[-1][2],
        }
        for name, runs in rows.items()
    }


def _concurrent(quick: bool) -> dict[str, Any]:
    """The burst runs in a child process killed at a hard time limit: an overloaded event
    loop can overrun asyncio timeouts by tens of seconds, and CI needs a bounded run."""
    if importlib.util.find_spec("uvicorn") is not None:
        spec, server = {"kind": "uvicorn", "host": "127.0.0.1"}, "uvicorn (child process)"
    else:  # pragma: no cover - uvicorn is a dev dependency
        spec = {"kind": "fault", "host": "127.0.0.1", "fault": "ok"}
        server = "FaultServer (child process)"
    repeats, limit = (1, 12.0) if quick else (3, 60.0)
    hard = repeats * 2 * (limit + 5.0) + 15.0
    out: dict[str, Any] = {"server": server, "requests": CONCURRENT, "time_limit_s": limit}
    with ServerProcess([spec]) as srv, tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "burst.json"
        cmd = [sys.executable, "-m", "benchmarks.bench_scale", "--burst-child", srv.urls[0]]
        cmd += ["--burst-out", str(target), "--burst-limit", str(limit), "--burst-repeats"]
        cmd.append(str(repeats))
        try:
            subprocess.run(cmd, cwd=ROOT, timeout=hard, check=True, capture_output=True)
        except subprocess.TimeoutExpired:
            failed = {"succeeded": 0, "wall_s_best": hard, "wall_s_worst": hard}
            out["httpx"] = out["svcclient"] = {**failed, "errors": {"killed at hard limit": 1}}
            return out
        out.update(json.loads(target.read_text()))
    return out


def run(quick: bool) -> dict[str, Any]:
    """Pick cost, memory flatness and a 1,000-request burst; see the module docstring."""
    return {
        "pick_cost": _pick_cost(quick),
        "memory": _memory(quick),
        "concurrent": _concurrent(quick),
    }


def render(result: dict[str, Any]) -> str:
    """Markdown tables for the three scale measurements."""
    pick = result["pick_cost"]["by_strategy"]
    lines = [
        "| strategy | " + " | ".join(f"{s} eps pick / cycle µs" for s in SIZES) + " |",
        "| --- |" + " ---: |" * len(SIZES),
    ]
    for strategy, by_size in pick.items():
        cells = [f"{by_size[str(s)]['pick']:.2f} / {by_size[str(s)]['cycle']:.2f}" for s in SIZES]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    mem = result["memory"]
    bound = " (time bound hit)" if mem["time_bound_hit"] else ""
    lines += [
        "",
        "| memory | value |",
        "| --- | ---: |",
        f"| requests after warm-up | {mem['requests']:,}{bound} |",
        f"| live blocks growth per 1k requests (bound {mem['blocks_bound_per_1k']:g}) "
        f"| {mem['blocks_growth_per_1k']:.2f} |",
        f"| tracemalloc growth over {mem['traced_requests']:,} requests "
        f"| {mem['traced_growth_bytes']:,} B |",
    ]
    conc = result["concurrent"]
    lines += [
        "",
        f"| {conc['requests']:,} concurrent requests ({conc['server']}) | succeeded "
        "| wall s (best-worst) | errors (last run) |",
        "| --- | ---: | ---: | --- |",
    ]
    for name in ("httpx", "svcclient"):
        row = conc[name]
        errs = ", ".join(f"{k} {v}" for k, v in row["errors"].items()) or "none"
        lines.append(
            f"| {name} | {row['succeeded']:,} | {row['wall_s_best']:.2f}-{row['wall_s_worst']:.2f} "
            f"| {errs} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="svcclient scale benchmarks")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--burst-child", help=argparse.SUPPRESS)
    parser.add_argument("--burst-out", help=argparse.SUPPRESS)
    parser.add_argument("--burst-limit", type=float, default=8.0, help=argparse.SUPPRESS)
    parser.add_argument("--burst-repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.burst_child:
        result = asyncio.run(_bursts(args.burst_child, args.burst_repeats, args.burst_limit))
        Path(args.burst_out).write_text(json.dumps(result))
        return 0
    print(render(run(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
