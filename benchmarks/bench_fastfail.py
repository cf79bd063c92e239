"""Fast failure: how long a call takes to be refused with the breaker open or the bulkhead full.

Claim 3 of the benchmark issue. Each case is a complete client call
(``client.get(path)`` raising) and, for the breaker, also the transport alone
(``handle_request`` with a pre-built request), so httpx's request building can be told
apart from the pipeline's rejection. The happy-path call on the same client is the
reference; the do-it-yourself stack (tenacity + pybreaker, breaker opened) is the
comparison. The mock "server" counts requests: rejections must send none.

Run ``python -m benchmarks.bench_fastfail [--quick]``; ``run(quick)`` returns a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import sys
import threading
from collections.abc import Callable
from typing import Any

import httpx

from benchmarks._timing import Runner, async_runner, interleave, sync_runner
from benchmarks.bench_overhead import BASE, BODY, PATH, diy_client
from svcclient import (
    AsyncServiceClient,
    BulkheadFullError,
    BulkheadPolicy,
    CircuitOpenError,
    RetryPolicy,
    ServiceClient,
    ServiceConfig,
)

__all__ = ["main", "render", "run"]

HOLD = "/hold"
# Correctness here never depends on wall time: the open breakers run on a frozen clock (they
# can never reach their reset timeout and go half-open, however slow the machine), and the
# request holding the bulkhead may wait far longer than a section can run (each section is
# bounded by interleave's max_seconds; the hold ends as soon as the section does).
_HOLD_SECONDS = 600.0  # a held request never outlives this, whatever happens


def _frozen_clock() -> float:
    return 0.0


def _holding(name: str, policy: BulkheadPolicy) -> ServiceConfig:
    """A config whose one held request outlasts the section: no attempt timeout, deadline
    or retry ends it before the section releases it."""
    return ServiceConfig(
        name,
        url=BASE,
        bulkhead=policy,
        timeout=_HOLD_SECONDS,
        deadline=_HOLD_SECONDS,
        retry=RetryPolicy.disabled(),
        breaker=None,
    )


class _Server:
    """A MockTransport handler counting requests; ``/hold`` blocks until released."""

    def __init__(self) -> None:
        self.count = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        if request.url.path == HOLD:
            self.entered.set()
            self.release.wait(_HOLD_SECONDS)
        return httpx.Response(200, content=BODY)


class _AsyncServer:
    def __init__(self) -> None:
        self.count = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        if request.url.path == HOLD:
            self.entered.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), _HOLD_SECONDS)
        return httpx.Response(200, content=BODY)


def _rejecting(call: Callable[[], object], error: type[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except error:
            return
        raise AssertionError("the call was not rejected")

    return run


def _breaker_open(number: int, rounds: int, max_s: float) -> dict[str, Any]:
    server = _Server()
    mock = httpx.MockTransport(server)
    happy = ServiceClient(
        ServiceConfig("bench-ff-happy", url=BASE), transport=httpx.MockTransport(_Server())
    )
    client = ServiceClient(
        ServiceConfig("bench-ff-open", url=BASE), transport=mock, clock=_frozen_clock
    )
    breaker = client.resilient.runtime.breaker
    assert breaker is not None
    breaker.open()
    request = client.build_request("GET", PATH)
    transport = client.resilient
    contenders: dict[str, Runner] = {
        "happy path (reference)": sync_runner(lambda: happy.get(PATH)),
        "ServiceClient.get -> CircuitOpenError": sync_runner(
            _rejecting(lambda: client.get(PATH), CircuitOpenError)
        ),
        "ResilientTransport.handle_request -> CircuitOpenError": sync_runner(
            _rejecting(lambda: transport.handle_request(request), CircuitOpenError)
        ),
    }
    diy_http = httpx.Client(transport=mock, base_url=BASE)
    if importlib.util.find_spec("pybreaker") is not None:
        import pybreaker

        pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=1e9)
        pb.open()
        diy = diy_client(diy_http, pb)
        contenders["tenacity + pybreaker -> CircuitBreakerError"] = sync_runner(
            _rejecting(lambda: diy(PATH), pybreaker.CircuitBreakerError)
        )
    try:
        happy.get(PATH)
        before = server.count
        cmp = interleave(
            contenders,
            number=number,
            rounds=rounds,
            baseline="happy path (reference)",
            max_seconds=max_s,
        )
        sent = server.count - before
    finally:
        for c in (happy, client, diy_http):
            c.close()
    out = cmp.as_dict()
    out["requests_sent_while_open"] = sent
    return out


def _bulkhead_full(number: int, rounds: int, max_s: float) -> dict[str, Any]:
    server = _Server()
    mock = httpx.MockTransport(server)
    policy = BulkheadPolicy(max_concurrent=1, max_waiting=0)
    client = ServiceClient(
        _holding("bench-ff-bulkhead", policy), transport=mock, clock=_frozen_clock
    )
    holder = threading.Thread(target=lambda: client.get(HOLD), daemon=True)
    holder.start()
    try:
        if not server.entered.wait(10.0):
            raise RuntimeError("the holding request never reached the server")
        before = server.count
        cmp = interleave(
            {
                "ServiceClient.get -> BulkheadFullError": sync_runner(
                    _rejecting(lambda: client.get(PATH), BulkheadFullError)
                )
            },
            number=number,
            rounds=rounds,
            max_seconds=max_s,
        )
        sent = server.count - before
    finally:
        server.release.set()
        holder.join(_HOLD_SECONDS)
        client.close()
    out = cmp.as_dict()
    out["requests_sent_while_full"] = sent
    return out


def _async_cases(number: int, rounds: int, max_s: float) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    server = _AsyncServer()
    mock = httpx.MockTransport(server)
    opened = AsyncServiceClient(
        ServiceConfig("bench-ff-async-open", url=BASE), transport=mock, clock=_frozen_clock
    )
    breaker = opened.resilient.runtime.breaker
    assert breaker is not None
    breaker.open()
    policy = BulkheadPolicy(max_concurrent=1, max_waiting=0)
    full = AsyncServiceClient(
        _holding("bench-ff-async-bulkhead", policy), transport=mock, clock=_frozen_clock
    )

    async def reject(client: AsyncServiceClient, error: type[BaseException]) -> None:
        try:
            await client.get(PATH)
        except error:
            return
        raise AssertionError("the call was not rejected")

    async def hold() -> None:
        holder = asyncio.ensure_future(full.get(HOLD))
        await asyncio.wait_for(server.entered.wait(), 10.0)
        holder.add_done_callback(lambda t: t.exception())

    try:
        loop.run_until_complete(hold())
        before = server.count
        cmp = interleave(
            {
                "AsyncServiceClient.get -> CircuitOpenError": async_runner(
                    loop, lambda: reject(opened, CircuitOpenError)
                ),
                "AsyncServiceClient.get -> BulkheadFullError": async_runner(
                    loop, lambda: reject(full, BulkheadFullError)
                ),
            },
            number=number,
            rounds=rounds,
            max_seconds=max_s,
        )
        sent = server.count - before
    finally:
        server.release.set()
        loop.run_until_complete(asyncio.sleep(0.01))
        for c in (opened, full):
            loop.run_until_complete(c.aclose())
        pending = asyncio.all_tasks(loop)
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=5.0))
        loop.close()
    out = cmp.as_dict()
    out["requests_sent"] = sent
    return out


def run(quick: bool) -> dict[str, Any]:
    """Rejection cost per call (µs), with the requests that reached the server (0)."""
    number, rounds, max_s = (500, 7, 5.0) if quick else (2000, 15, 20.0)
    return {
        "breaker_open": _breaker_open(number, rounds, max_s),
        "bulkhead_full": _bulkhead_full(number, rounds, max_s),
        "async": _async_cases(number, rounds, max_s),
    }


def render(result: dict[str, Any]) -> str:
    """Markdown: µs per rejected call, median (min-max)."""
    lines = [
        "| case | µs/call median (min-max) | requests that reached the server |",
        "| --- | ---: | ---: |",
    ]
    for section, sent_key in (
        ("breaker_open", "requests_sent_while_open"),
        ("bulkhead_full", "requests_sent_while_full"),
        ("async", "requests_sent"),
    ):
        data = result[section]
        for name, v in data["per_op_us"].items():
            sent = "-" if "reference" in name else str(data[sent_key])
            lines.append(f"| {name} | {v['median']:.1f} ({v['min']:.1f}-{v['max']:.1f}) | {sent} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="svcclient fast-failure cost")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(render(run(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
