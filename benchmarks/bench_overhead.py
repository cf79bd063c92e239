"""Happy-path overhead: bare httpx vs ServiceClient, and vs the do-it-yourself stack.

Claims 1 and 2 of the benchmark issue, measured interleaved (see ``_timing``):

* **MockTransport, sync and async**: ``httpx.Client`` vs ``ServiceClient`` with the full
  default pipeline (discovery, balancer, breaker, retry + budget, deadline, Prometheus
  metrics on a private registry, the OpenTelemetry API with no SDK), both sending through
  the same in-process ``httpx.MockTransport``. Also ``ServiceClient(hooks=())`` to split
  the observers' share from the pipeline's, and the transports alone (a pre-built request
  straight into ``handle_request``) to split httpx's client machinery from ours.
* **Do-it-yourself**: tenacity ``@retry`` + pybreaker around ``httpx.Client.get`` (what a
  Python user writes today) on the same MockTransport, in the same rounds.
* **Real server**: the same pair against uvicorn (a minimal ASGI app) on 127.0.0.1 in a
  child process, keep-alive connections, sync and async.

Run ``python -m benchmarks.bench_overhead [--quick] [--profile]``; ``run(quick)`` returns
a JSON-ready dict. ``--profile`` prints cProfile's top costs of the ServiceClient path.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import pstats
import sys
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from benchmarks._servers import ServerProcess
from benchmarks._timing import async_runner, interleave, sync_runner
from svcclient import AsyncServiceClient, ServiceClient, ServiceConfig

__all__ = ["diy_client", "main", "mock_handler", "render", "run"]

BODY = b'{"id":42,"name":"Ada"}'
PATH = "/users/42"
BASE = "http://user-service:8080"
BARE = "httpx"
OURS = "svcclient (defaults)"
OURS_NO_HOOKS = "svcclient (hooks=())"
DIY = "tenacity + pybreaker"


def mock_handler(request: httpx.Request) -> httpx.Response:
    """The in-process 'server': 200 with a small JSON body."""
    return httpx.Response(200, content=BODY, headers={"content-type": "application/json"})


def diy_client(client: httpx.Client, breaker: Any = None) -> Callable[[str], httpx.Response]:
    """``get(path)`` as users build it today: tenacity retries around a pybreaker call.

    Retries transport errors and 502/503/504 up to 3 attempts with jittered exponential
    backoff; pybreaker opens after 5 consecutive failures for 30 s (an open breaker's
    ``CircuitBreakerError`` is not retried: it reaches the caller at once).
    """
    import pybreaker
    import tenacity

    if breaker is None:
        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=1.0),
        retry=(
            tenacity.retry_if_exception_type(httpx.TransportError)
            | tenacity.retry_if_result(lambda r: r.status_code in (502, 503, 504))
        ),
        reraise=True,
    )
    def get(path: str) -> httpx.Response:
        response: httpx.Response = breaker.call(client.get, path)
        return response

    return get


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"number": 100, "rounds": 15, "real_number": 50, "real_rounds": 7, "max_s": 10}
    return {"number": 500, "rounds": 21, "real_number": 300, "real_rounds": 15, "max_s": 60}


def _mock_sync(n: dict[str, int]) -> dict[str, Any]:
    mock = httpx.MockTransport(mock_handler)
    registry = CollectorRegistry()
    bare = httpx.Client(transport=mock, base_url=BASE)
    ours = ServiceClient(
        ServiceConfig("bench-overhead-sync", url=BASE), transport=mock, registry=registry
    )
    quiet = ServiceClient(
        ServiceConfig("bench-overhead-sync-nohooks", url=BASE), transport=mock, hooks=()
    )
    diy_http = httpx.Client(transport=mock, base_url=BASE)
    diy = diy_client(diy_http)
    try:
        contenders = {
            BARE: sync_runner(lambda: bare.get(PATH)),
            OURS: sync_runner(lambda: ours.get(PATH)),
            OURS_NO_HOOKS: sync_runner(lambda: quiet.get(PATH)),
        }
        if importlib.util.find_spec("pybreaker") is not None:
            contenders[DIY] = sync_runner(lambda: diy(PATH))
        cmp = interleave(
            contenders,
            number=n["number"],
            rounds=n["rounds"],
            baseline=BARE,
            max_seconds=n["max_s"],
        )
        # The transports alone: what the pipeline adds, without httpx.Client's own work.
        request = bare.build_request("GET", PATH)
        ours_request = ours.build_request("GET", PATH)
        pipeline = interleave(
            {
                "MockTransport.handle_request": sync_runner(lambda: mock.handle_request(request)),
                "ResilientTransport.handle_request": sync_runner(
                    lambda: ours.resilient.handle_request(ours_request)
                ),
            },
            number=n["number"] * 2,
            rounds=n["rounds"],
            baseline="MockTransport.handle_request",
            max_seconds=n["max_s"] / 2,
        )
    finally:
        for c in (bare, ours, quiet, diy_http):
            c.close()
    return {"clients": cmp.as_dict(), "transports": pipeline.as_dict()}


def _mock_async(n: dict[str, int]) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    mock = httpx.MockTransport(mock_handler)
    bare = httpx.AsyncClient(transport=mock, base_url=BASE)
    ours = AsyncServiceClient(
        ServiceConfig("bench-overhead-async", url=BASE),
        transport=mock,
        registry=CollectorRegistry(),
    )
    quiet = AsyncServiceClient(
        ServiceConfig("bench-overhead-async-nohooks", url=BASE), transport=mock, hooks=()
    )
    try:
        cmp = interleave(
            {
                BARE: async_runner(loop, lambda: bare.get(PATH)),
                OURS: async_runner(loop, lambda: ours.get(PATH)),
                OURS_NO_HOOKS: async_runner(loop, lambda: quiet.get(PATH)),
            },
            number=n["number"],
            rounds=n["rounds"],
            baseline=BARE,
            max_seconds=n["max_s"],
        )
    finally:
        for c in (bare, ours, quiet):
            loop.run_until_complete(c.aclose())
        loop.close()
    return cmp.as_dict()


def _real(n: dict[str, int]) -> dict[str, Any]:
    if importlib.util.find_spec("uvicorn") is not None:
        spec, server = {"kind": "uvicorn", "host": "127.0.0.1"}, "uvicorn (child process)"
    else:  # pragma: no cover - uvicorn is a dev dependency
        spec = {"kind": "fault", "host": "127.0.0.1", "fault": "ok"}
        server = "FaultServer (child process; uvicorn not installed)"
    out: dict[str, Any] = {"server": server}
    with ServerProcess([spec]) as srv:
        url = srv.urls[0]
        bare = httpx.Client(base_url=url)
        ours = ServiceClient(
            ServiceConfig("bench-overhead-real-sync", url=url), registry=CollectorRegistry()
        )
        try:
            out["sync"] = interleave(
                {
                    BARE: sync_runner(lambda: bare.get(PATH)),
                    OURS: sync_runner(lambda: ours.get(PATH)),
                },
                number=n["real_number"],
                rounds=n["real_rounds"],
                baseline=BARE,
                max_seconds=n["max_s"],
            ).as_dict()
        finally:
            bare.close()
            ours.close()
        loop = asyncio.new_event_loop()
        abare = httpx.AsyncClient(base_url=url)
        aours = AsyncServiceClient(
            ServiceConfig("bench-overhead-real-async", url=url), registry=CollectorRegistry()
        )
        try:
            out["async"] = interleave(
                {
                    BARE: async_runner(loop, lambda: abare.get(PATH)),
                    OURS: async_runner(loop, lambda: aours.get(PATH)),
                },
                number=n["real_number"],
                rounds=n["real_rounds"],
                baseline=BARE,
                max_seconds=n["max_s"],
            ).as_dict()
        finally:
            loop.run_until_complete(abare.aclose())
            loop.run_until_complete(aours.aclose())
            loop.close()
        out["server_requests"] = srv.command("counts")
    return out


def run(quick: bool) -> dict[str, Any]:
    """Every overhead comparison; times in µs per request, ratios over bare httpx."""
    n = _sizes(quick)
    return {
        "mock_sync": _mock_sync(n),
        "mock_async": _mock_async(n),
        "real": _real(n),
        "params": n,
    }


def _row(label: str, section: dict[str, Any], name: str) -> str:
    per = section["per_op_us"][name]
    timing = f"{per['median']:.1f} ({per['min']:.1f}-{per['max']:.1f})"
    if name == section["baseline"]:
        return f"| {label} | {name} | {timing} | - | - |"
    ratio = section["ratio"][name]
    added = section["added_us"][name]
    spread = f"{ratio['median']:.3f} ({ratio['min']:.3f}-{ratio['max']:.3f})"
    return f"| {label} | {name} | {timing} | {added['median']:+.1f} | {spread} |"


def render(result: dict[str, Any]) -> str:
    """Markdown: µs per request median (min-max), µs added and ratio to bare httpx."""
    lines = [
        "| setup | contender | µs/request median (min-max) | µs added (median) "
        "| ratio median (min-max) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    sections = [
        ("MockTransport, sync", result["mock_sync"]["clients"]),
        ("transports only, sync", result["mock_sync"]["transports"]),
        ("MockTransport, async", result["mock_async"]),
    ]
    real = result["real"]
    if "sync" in real:
        sections.append((f"{real['server']}, sync", real["sync"]))
    if "async" in real:
        sections.append((f"{real['server']}, async", real["async"]))
    for label, section in sections:
        for name in section["per_op_us"]:
            lines.append(_row(label, section, name))
    return "\n".join(lines)


def _profile(client: httpx.Client, requests: int) -> pstats.Stats:
    for _ in range(200):
        client.get(PATH)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(requests):
        client.get(PATH)
    prof.disable()
    return pstats.Stats(prof)


def _where(func: tuple[str, int, str]) -> str:
    path = func[0].split("site-packages/")[-1].split("/work/main/")[-1]
    return f"{path}:{func[1]}({func[2]})"


def profile(requests: int = 3000, top: int = 25) -> str:
    """What ``ServiceClient.get`` adds over ``httpx.Client.get`` on a MockTransport.

    Profiles both with cProfile and lists, per request, the functions whose own time or
    call count grew: the call counts are exact, the times carry cProfile's overhead (it
    inflates many small calls) and the machine's noise.
    """
    mock = httpx.MockTransport(mock_handler)
    bare = httpx.Client(transport=mock, base_url=BASE)
    ours = ServiceClient(
        ServiceConfig("bench-overhead-profile", url=BASE),
        transport=mock,
        registry=CollectorRegistry(),
    )
    try:
        base_stats: Any = _profile(bare, requests).stats  # type: ignore[attr-defined]
        our_stats: Any = _profile(ours, requests).stats  # type: ignore[attr-defined]
    finally:
        bare.close()
        ours.close()
    rows = []
    for func, (_, calls, own, cum, _callers) in our_stats.items():
        _, b_calls, b_own, _, _ = base_stats.get(func, (0, 0, 0.0, 0.0, {}))
        if calls > b_calls:
            rows.append(((own - b_own) / requests * 1e6, (calls - b_calls) / requests, cum, func))
    rows.sort(key=lambda r: r[0], reverse=True)
    total_ours = sum(v[2] for v in our_stats.values()) / requests * 1e6
    total_base = sum(v[2] for v in base_stats.values()) / requests * 1e6
    lines = [
        f"cProfile, {requests} requests each: httpx {total_base:.1f} µs/request, "
        f"svcclient {total_ours:.1f} µs/request (profiled times; the ratio is what matters)",
        "",
        "| own µs/request added | extra calls/request | function |",
        "| ---: | ---: | --- |",
    ]
    for own, calls, _, func in rows[:top]:
        lines.append(f"| {own:.2f} | {calls:.1f} | {_where(func)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="svcclient happy-path overhead")
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile the ServiceClient path")
    args = parser.parse_args(argv)
    if args.profile:
        print(profile())
        return 0
    print(render(run(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
