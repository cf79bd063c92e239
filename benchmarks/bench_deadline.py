"""Deadline overrun: how long after its deadline a call ends, against servers that misbehave.

For each misbehaviour of the fault server (and a DNS server that never answers) and each
way of calling (sync / async on asyncio and trio; ``ServiceClient.get``, ``.stream()``,
a plain ``httpx.Client`` on ``ResilientTransport`` with a 5 s httpx timeout, ``get`` and
``stream``; svcclient's own pools, a caller's ``httpx.HTTPTransport``, or the aiohttp
wire), a bounded number
of calls are made with deadline ``D`` and per-attempt timeout ``D / 2``; the overrun is
``elapsed - D``. The report gives the max and median overrun (ms) per scenario and
driver, and the worst per scenario. Goal: every call ends by ``D + 100 ms``.

A caller's *sync* ``httpx.HTTPTransport`` has no timer to stop a read that keeps getting
a byte inside every read timeout (a dribbled response head): svcclient caps its pool's
sockets at the bound as it caps its own (``cap_caller_transport``); the
``dribble_headers`` rows show it.

This is a report, not a gate: correctness (the error type, the generous bound, nothing
leaked) is pinned by ``tests/integration/test_deadline_http.py``. Calls run a few at a
time in threads (each call waits, almost never computes), so the numbers include the
scheduling noise of a shared machine; the median shows it, the max is the claim.

Run ``python -m benchmarks.bench_deadline [--quick]``; ``run(quick)`` returns a dict.
``--quick`` runs a reduced matrix (every scenario, four drivers that between them use
each code path) with ``D = 0.4 s``, one call each: a few seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from svcclient import (
    AsyncResilientTransport,
    AsyncServiceClient,
    ResilientTransport,
    ServiceClient,
)
from svcclient.testing._faultserver import Fault, FaultServer
from svcclient.testing._localdns import LocalDns

__all__ = ["DRIVERS", "SCENARIOS", "main", "render", "run"]

CALLER_TIMEOUT = 5.0  # the plain httpx.Client's own timeout: larger than any deadline here
SCENARIOS = (
    "dribble",
    "endless",
    "blackhole",
    "stall_mid_body",
    "never_accept",
    "dns_hang",
    "dribble_headers",
)
# (mode, api): mode "sync", "asyncio" or "trio"; api "get", "stream" (ServiceClient) or
# "plain_get", "plain_stream" (httpx.Client / AsyncClient on the resilient transport).
DRIVERS = tuple(
    (mode, api)
    for mode in ("sync", "asyncio", "trio")
    for api in ("get", "stream", "plain_get", "plain_stream")
)
POOLS = ("own", "caller")
QUICK_DRIVERS = (
    ("sync", "get", "own"),
    ("sync", "plain_stream", "caller"),
    ("asyncio", "stream", "own"),
    ("trio", "plain_get", "caller"),
)


def _fault(scenario: str, deadline: float) -> Fault:
    interval = deadline / 5  # well under the attempt timeout: no single read times out
    # ``lasting``: a client that does not stop them still finishes, so the run is bounded.
    lasting = 10 * deadline
    return {
        "dribble": Fault.dribble(interval, lasting=lasting),
        # Unbounded with a caller's sync transport (see the module docstring): the server
        # gives up after 3 deadlines, which is what those rows then show.
        "dribble_headers": Fault.dribble_headers(interval, lasting=3 * deadline),
        "endless": Fault.endless_chunked(0.0, size=4096, lasting=lasting),
        "blackhole": Fault.accept_never_answer(),
        "stall_mid_body": Fault.stall_mid_body(600.0),
        "never_accept": Fault.never_accept(),
        "dns_hang": Fault.ok(),
    }[scenario]


@dataclass(frozen=True)
class _Case:
    scenario: str
    mode: str
    api: str
    pools: str
    url: str
    deadline: float
    nameserver: str | None

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "wire": "aiohttp" if self.pools == "aiohttp" else "httpx",
            "url": self.url,
            "deadline": self.deadline,
            "timeout": self.deadline / 2,
            "breaker": None,
            "hooks": [],
        }
        if self.nameserver is not None:
            # dns_timeout longer than the deadline: only the deadline can bound the wait.
            opts.update(dns_nameservers=[self.nameserver], dns_timeout=5.0)
        return opts


def _drain_sync(response: httpx.Response) -> None:
    for _ in response.iter_bytes():
        pass


async def _drain_async(response: httpx.Response) -> None:
    async for _ in response.aiter_bytes():
        pass


def _sync_call(case: _Case, mark: Callable[[], None]) -> None:
    inner = httpx.HTTPTransport() if case.pools == "caller" else None
    name = "bench-" + case.scenario.replace("_", "-")
    if case.api in ("get", "stream"):
        with ServiceClient(name, transport=inner, **case.options()) as client:
            mark()
            if case.api == "get":
                client.get("/x")
            else:
                with client.stream("GET", "/x") as response:
                    _drain_sync(response)
        return
    transport = ResilientTransport(name, inner, **case.options())
    with httpx.Client(transport=transport, timeout=CALLER_TIMEOUT) as plain:
        mark()
        if case.api == "plain_get":
            plain.get(case.url + "/x")
        else:
            with plain.stream("GET", case.url + "/x") as response:
                _drain_sync(response)


async def _async_call(case: _Case, mark: Callable[[], None]) -> None:
    inner = httpx.AsyncHTTPTransport() if case.pools == "caller" else None
    name = "bench-" + case.scenario.replace("_", "-")
    if case.api in ("get", "stream"):
        async with AsyncServiceClient(name, transport=inner, **case.options()) as client:
            mark()
            if case.api == "get":
                await client.get("/x")
            else:
                async with client.stream("GET", "/x") as response:
                    await _drain_async(response)
        return
    transport = AsyncResilientTransport(name, inner, **case.options())
    async with httpx.AsyncClient(transport=transport, timeout=CALLER_TIMEOUT) as plain:
        mark()
        if case.api == "plain_get":
            await plain.get(case.url + "/x")
        else:
            async with plain.stream("GET", case.url + "/x") as response:
                await _drain_async(response)


def _timed(case: _Case) -> tuple[float, str]:
    """(overrun in seconds, outcome) of one call, timed from the call (the client is
    built first) to its end, error or not."""
    started = math.nan
    outcome = "returned"

    def mark() -> None:
        nonlocal started
        started = time.monotonic()

    try:
        if case.mode == "sync":
            _sync_call(case, mark)
        else:
            anyio.run(_async_call, case, mark, backend=case.mode)
    except Exception as exc:  # the outcome is reported, never raised
        outcome = type(exc).__name__
    return time.monotonic() - started - case.deadline, outcome


@contextlib.contextmanager
def _servers(deadline: float) -> Iterator[tuple[dict[str, str], str]]:
    """One fault server per scenario (host 127.0.0.10+), and a silent DNS server."""
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        for i, scenario in enumerate(SCENARIOS):
            srv = stack.enter_context(FaultServer(f"127.0.0.{10 + i}", name=scenario))
            srv.set_fault(_fault(scenario, deadline))
            urls[scenario] = srv.url
        dns = stack.enter_context(LocalDns())
        dns.set_silent(True)
        port = urls["dns_hang"].rsplit(":", 1)[1]
        urls["dns_hang"] = f"http://hang.svc.test:{port}"
        yield urls, dns.nameserver


def _summary(samples: list[tuple[float, str]]) -> dict[str, Any]:
    overruns = [o for o, _ in samples]
    return {
        "calls": len(samples),
        "max_ms": round(max(overruns) * 1000, 1),
        "median_ms": round(statistics.median(overruns) * 1000, 1),
        "outcomes": sorted({o for _, o in samples}),
    }


def run(quick: bool, *, calls: int | None = None) -> dict[str, Any]:
    """Overrun max/median (ms) per scenario and driver, and the worst per scenario."""
    deadline = 0.4 if quick else 1.0
    n = calls if calls is not None else (1 if quick else 3)
    combos = (
        list(QUICK_DRIVERS)
        if quick
        else [(mode, api, pools) for mode, api in DRIVERS for pools in POOLS]
        + [("asyncio", api, "aiohttp") for api in ("get", "stream")]
    )
    with _servers(deadline) as (urls, nameserver):
        cases = [
            _Case(
                scenario,
                mode,
                api,
                pools,
                urls[scenario],
                deadline,
                nameserver if scenario == "dns_hang" else None,
            )
            for scenario in SCENARIOS
            for mode, api, pools in combos
        ]
        # Import httpcore (lazily imported by httpx's transports; it imports trio) and
        # anyio's trio backend here, once: threads importing trio at the same moment can
        # leave httpcore believing trio is missing for the rest of the process.
        httpx.HTTPTransport().close()
        anyio.run(anyio.sleep, 0, backend="trio")
        t0 = time.monotonic()
        # Bounded: every call ends by its deadline (or the fault server's own bound), and
        # the pool runs a few at a time so the machine's two cores are not swamped.
        with ThreadPoolExecutor(max_workers=4 if quick else 3) as pool:
            results = list(pool.map(lambda c: [_timed(c) for _ in range(n)], cases))
        wall = time.monotonic() - t0
    by_scenario: dict[str, Any] = {}
    for case, samples in zip(cases, results, strict=True):
        entry = by_scenario.setdefault(case.scenario, {"drivers": {}})
        entry["drivers"][f"{case.mode} {case.api} ({case.pools} pools)"] = _summary(samples)
    for entry in by_scenario.values():
        drivers = entry["drivers"].values()
        entry["worst_ms"] = max(d["max_ms"] for d in drivers)
    return {
        "deadline_s": deadline,
        "timeout_s": deadline / 2,
        "calls_per_driver": n,
        "wall_s": round(wall, 2),
        "scenarios": by_scenario,
    }


def render(result: dict[str, Any]) -> str:
    """Markdown: one row per scenario and driver, worst first within each scenario."""
    lines = [
        f"Deadline {result['deadline_s']:g} s, attempt timeout {result['timeout_s']:g} s, "
        f"{result['calls_per_driver']} call(s) per driver; overrun = elapsed - deadline.",
        "",
        "| scenario | driver | max overrun ms | median ms | outcome |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for scenario, entry in result["scenarios"].items():
        rows = sorted(entry["drivers"].items(), key=lambda kv: -kv[1]["max_ms"])
        for driver, s in rows:
            lines.append(
                f"| {scenario} | {driver} | {s['max_ms']:.0f} | {s['median_ms']:.0f} "
                f"| {', '.join(s['outcomes'])} |"
            )
    lines += ["", "| scenario | worst overrun ms |", "| --- | ---: |"]
    for scenario, entry in result["scenarios"].items():
        lines.append(f"| {scenario} | {entry['worst_ms']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=None, help="calls per driver")
    args = parser.parse_args(argv)
    print(render(run(args.quick, calls=args.calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
