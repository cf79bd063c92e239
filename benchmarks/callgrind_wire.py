"""Instructions per async request on each wire, counted by callgrind (report only).

One request at a time to the canned-answer server (a child process valgrind does not
trace) on keep-alive connections, each contender in turn in one valgrind process:
bare ``httpx.AsyncClient``, bare ``aiohttp.ClientSession``, and ``AsyncServiceClient``
with defaults on the httpx wire and on ``wire="aiohttp"``. The counting is
:mod:`benchmarks._callgrind`'s (batches of N and 2 N, their difference over N); svcclient
gets a constant clock as in :mod:`benchmarks.callgrind_overhead`. What the table shows is
where a request's instructions go on each wire: httpx's client layer (request and response
models), svcclient's pipeline, and the wire itself (httpcore in Python, or aiohttp's C
parser) — the part a burst of concurrent requests pays for in CPU.

``--guard`` (CI) exits 1 when a service client's ratio to bare httpx is above its bound
(``BOUNDS``: the figure measured when the bound was set + 0.03), so the shortcuts through
httpx's client work (``svcclient._shortcuts``), which a burst on the aiohttp wire lives on,
cannot be lost unnoticed; instruction counts are deterministic, so the guard is not flaky.

Run ``python -m benchmarks.callgrind_wire [-n 30] [--guard]``; needs valgrind and aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from benchmarks._callgrind import Batches, constant_clock, have_valgrind, per_call

__all__ = ["BOUNDS", "CONTENDERS", "broken", "main", "render", "run"]

PATH = "/users/1"
CONTENDERS = (
    "bare httpx.AsyncClient",
    "bare aiohttp.ClientSession",
    "AsyncServiceClient defaults, httpx wire",
    'AsyncServiceClient defaults, wire="aiohttp"',
    'AsyncServiceClient hooks=[], wire="aiohttp"',
)

# Ratio to bare httpx each service client must stay under (measured 0.690 / 0.265 on
# 2026-12-02 with the shortcuts, + 0.03; before them 0.778 / 0.363).
BOUNDS = {
    "AsyncServiceClient defaults, httpx wire": 0.72,
    'AsyncServiceClient defaults, wire="aiohttp"': 0.30,
}


def broken(result: dict[str, Any]) -> list[str]:
    """The contenders whose ratio to bare httpx is above its bound."""
    ratios = result["ratio_to_bare_httpx"]
    return [name for name, bound in BOUNDS.items() if ratios[name] > bound]


def _getter(name: str, url: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """(an async get returning the status, an async close) for contender ``name``."""
    import aiohttp
    import httpx
    from prometheus_client import CollectorRegistry

    from svcclient import AsyncServiceClient

    if name == "bare aiohttp.ClientSession":
        session = aiohttp.ClientSession(base_url=url)

        async def aio_get() -> int:
            async with session.get(PATH) as r:
                await r.read()
                return r.status

        return aio_get, session.close
    if name == "bare httpx.AsyncClient":
        client: httpx.AsyncClient = httpx.AsyncClient(base_url=url)
    else:
        options: dict[str, Any] = (
            {"hooks": []} if "hooks=[]" in name else {"registry": CollectorRegistry()}
        )
        client = AsyncServiceClient(
            "bench-callgrind-wire",
            url=url,
            clock=constant_clock,
            wire="aiohttp" if "aiohttp" in name else "httpx",
            **options,
        )

    async def get() -> int:
        return (await client.get(PATH)).status_code

    return get, client.aclose


def _child(spec: dict[str, Any]) -> int:
    batches = Batches(spec["n"])
    loop = asyncio.new_event_loop()
    for name in spec["contenders"]:
        get, close = loop.run_until_complete(_make(name, spec["url"]))

        async def many(count: int, get: Any = get) -> None:
            for _ in range(count):
                if await get() != 200:
                    raise RuntimeError("request failed")

        def make(count: int, many: Any = many) -> Callable[[], None]:
            return lambda: loop.run_until_complete(many(count))

        make(spec["warmup"])()
        batches.measure(name, make)
        loop.run_until_complete(close())
    loop.close()
    batches.write()
    return 0


async def _make(name: str, url: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    return _getter(name, url)  # aiohttp's session wants a running loop


def run(n: int = 30, warmup: int = 20) -> dict[str, Any]:
    """Instructions per request for each contender, and each one's ratio to bare httpx."""
    from benchmarks._servers import ServerProcess

    with ServerProcess([{"kind": "canned", "host": "127.0.0.1"}], lifetime=3600.0) as srv:
        spec = {"n": n, "warmup": warmup, "url": srv.urls[0], "contenders": list(CONTENDERS)}
        per = per_call("benchmarks.callgrind_wire", ["--child", json.dumps(spec)], n, 3600.0)
    bare = per[CONTENDERS[0]]
    return {
        "n": n,
        "instructions": per,
        "ratio_to_bare_httpx": {name: value / bare for name, value in per.items()},
    }


def render(result: dict[str, Any]) -> str:
    """Markdown: instructions per request and the ratio to bare httpx."""
    lines = [
        "| async request, real server | instructions per request | ratio to bare httpx |",
        "| --- | ---: | ---: |",
    ]
    for name, value in result["instructions"].items():
        ratio = result["ratio_to_bare_httpx"][name]
        bound = f" (bound {BOUNDS[name]:.2f})" if name in BOUNDS else ""
        lines.append(f"| {name} | {value:,.0f} | {ratio:.3f}{bound} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="requests per batch (N; 2N follows)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--guard", action="store_true", help="exit 1 when a bound is broken")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(json.loads(args.child))
    if not have_valgrind():
        return 2
    result = run(args.n, args.warmup)
    print(render(result))
    over = broken(result)
    if args.guard and over:
        print(f"\nWIRE INSTRUCTION BOUNDS BROKEN: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
