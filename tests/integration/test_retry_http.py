"""Retries, deadline, retry budget and hedging against real local servers (issue 4).

A transient fault must cost the caller nothing (refused pod, 503 then 200, 429 with
Retry-After); a POST is never sent twice; a stall ends in ``DeadlineExceeded`` on time; a
full outage does not turn into a retry storm; hedging cuts the latency tail that a slow
pod causes, and never hedges a POST.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from svcclient import (
    AsyncServiceClient,
    BudgetPolicy,
    DeadlineExceeded,
    HedgePolicy,
    OutlierPolicy,
    RetryPolicy,
    ServiceClient,
)
from svcclient.testing._faultserver import Fault, FaultServer
from tests.integration.netutil import Nameserver, pods_behind_dns, timed

pytestmark = pytest.mark.integration

MakeServer = Callable[..., FaultServer]
LeakCheck = Callable[..., contextlib.AbstractContextManager[None]]
SLACK = 0.6


@pytest.fixture
def trio(
    fault_server: MakeServer, dnsmasq: Callable[..., Nameserver]
) -> tuple[list[FaultServer], dict[str, Any]]:
    """Servers a, b, c on 127.0.0.2-4 behind ``api.svc.test``, and the client kwargs."""
    return pods_behind_dns(fault_server, dnsmasq, 3, hooks=[])


def _quiesce(*servers: FaultServer) -> None:
    """Abort the servers' own (in-process) connections so only client sockets are judged."""
    for server in servers:
        if server.listening:
            server.refuse()
            server.resume()


def _p99(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


# -- connection refused on one of three endpoints --------------------------------------------


def test_refused_one_of_three_every_call_succeeds_and_posts_arrive_once(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """One pod refuses: 30 GETs and 10 POSTs all succeed; the others got each POST exactly once."""
    (a, b, c), kw = trio
    a.refuse()
    with no_fd_leak():
        with ServiceClient("refuse-one", balancing={"strategy": "round_robin"}, **kw) as client:
            gets = [client.get(f"/g/{i}").status_code for i in range(30)]
            posts = [client.post("/p", json={"i": i}).status_code for i in range(10)]
    assert gets == [200] * 30 and posts == [200] * 10
    assert b.count("GET") + c.count("GET") == 30
    assert b.count("POST", "/p") + c.count("POST", "/p") == 10
    assert min(b.count("GET"), c.count("GET")) >= 10  # the refused pod's share was spread


@pytest.mark.anyio
async def test_async_refused_one_of_three_every_call_succeeds(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """The async driver retries a refused connection on another pod too: 100 % success."""
    (a, b, c), kw = trio
    a.refuse()
    with no_fd_leak():
        async with AsyncServiceClient("refuse-one-async", **kw) as client:
            codes = [(await client.get("/g")).status_code for _ in range(20)]
    assert codes == [200] * 20
    assert b.count() + c.count() == 20


# -- 503 then 200 ---------------------------------------------------------------------------


def test_503_then_200_is_one_successful_call(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """503, 503, then 200: the caller sees the 200 of the third attempt."""
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503), Fault.status(503)])
    with no_fd_leak():
        with ServiceClient("flaky", url=server.url, hooks=[]) as client:
            with timed() as took:
                response = client.get("/x")
    assert response.status_code == 200
    assert server.count() == 3
    assert took[0] < 0.5 + SLACK  # two jittered backoffs of <= 0.05 and 0.1 s, no Retry-After


def test_503_retry_goes_to_a_different_endpoint(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """Two pods of three answer 503: each retry moves to another pod, so every call ends 200."""
    (a, b, c), kw = trio
    a.set_fault(Fault.status(503))
    b.set_fault(Fault.status(503))
    with no_fd_leak():
        with ServiceClient("hop", breaker=None, outlier={"enabled": False}, **kw) as client:
            answered = [client.get(f"/call/{i}").json()["server"] for i in range(10)]
    assert answered == ["c"] * 10
    for i in range(10):
        # No pod saw the same call twice: the retry never went back to where it failed.
        assert all(s.count(path=f"/call/{i}") <= 1 for s in (a, b))
        assert sum(s.count(path=f"/call/{i}") for s in (a, b, c)) <= 3


# -- 429 with Retry-After -------------------------------------------------------------------


def test_429_retry_after_is_honoured_then_succeeds(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """429 with Retry-After: 0.5: the client waits >= 0.5 s (not its 50 ms backoff), then 200."""
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(429, retry_after=0.5)])
    with no_fd_leak():
        with ServiceClient("throttled", url=server.url, hooks=[]) as client:
            with timed() as took:
                response = client.get("/x")
    assert response.status_code == 200
    assert server.count() == 2
    assert 0.48 <= took[0] < 0.5 + SLACK


def test_429_on_a_post_is_returned_not_retried(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """429 on a POST without Idempotency-Key: the 429 is returned and the POST sent once."""
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(429, retry_after=0.1)])
    with no_fd_leak():
        with ServiceClient("throttled-post", url=server.url, hooks=[]) as client:
            response = client.post("/orders", json={"sku": 1})
    assert response.status_code == 429
    assert server.count("POST", "/orders") == 1


# -- a POST that must not be duplicated -----------------------------------------------------

NOT_TWICE = [
    pytest.param(Fault.status(503), id="503"),
    pytest.param(Fault.reset(), id="reset"),
    pytest.param(Fault.stall_before_headers(1.0), id="stall"),
]


@pytest.mark.parametrize("fault", NOT_TWICE)
def test_post_is_never_duplicated(
    fault_server: MakeServer, no_fd_leak: LeakCheck, fault: Fault
) -> None:
    """POST meets 503 / reset / stall: the server counts exactly one POST; an opt-in retries."""
    server = fault_server("127.0.0.2")
    server.push_faults([fault])
    with no_fd_leak():
        with ServiceClient(
            "no-dupes", url=server.url, timeout=0.3, deadline=2.0, breaker=None, hooks=[]
        ) as client:
            with contextlib.suppress(httpx.TransportError):
                client.post("/orders", json={"sku": 1})
            assert server.count("POST", "/orders") == 1
            server.push_faults([fault])
            opted = client.post("/opt-in", json={"sku": 2}, extensions={"retry": True})
        _quiesce(server)
    assert opted.status_code == 200
    assert server.count("POST", "/opt-in") == 2


def test_retry_false_forbids_retrying_a_get(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """extensions={'retry': False}: even a GET's 503 comes back as is, after one attempt."""
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503)])
    with no_fd_leak():
        with ServiceClient("no-retry", url=server.url, hooks=[]) as client:
            response = client.get("/x", extensions={"retry": False})
    assert response.status_code == 503
    assert server.count() == 1


# -- a stall past the deadline --------------------------------------------------------------


@pytest.mark.anyio
async def test_async_stall_everywhere_raises_deadline_exceeded_in_time(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """Every pod stalls: DeadlineExceeded at the deadline, attempts spread over different pods."""
    servers, kw = trio
    for server in servers:
        server.set_fault(Fault.stall_before_headers(3.0))
    with no_fd_leak():
        async with AsyncServiceClient(
            "stall-all",
            timeout=0.3,
            deadline=1.0,
            # More attempts than fit in the deadline: it is the deadline that ends the call.
            retry=RetryPolicy(attempts=6, backoff_base=0.01, backoff_cap=0.05),
            breaker=None,
            **kw,
        ) as client:
            with timed() as took, pytest.raises(DeadlineExceeded) as info:
                await client.get("/x")
        _quiesce(*servers)
    assert 0.9 <= took[0] < 1.0 + SLACK
    endpoints = [a.endpoint for a in info.value.attempts]
    assert len(endpoints) >= 2
    assert all(x != y for x, y in zip(endpoints, endpoints[1:], strict=False))
    assert {a.outcome for a in info.value.attempts} == {"read_timeout"}


def test_deadline_header_tells_each_attempt_the_time_left(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """With deadline_header set, each attempt carries the milliseconds left, shrinking."""
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503), Fault.status(503)])
    with no_fd_leak():
        with ServiceClient(
            "deadline-hdr",
            url=server.url,
            deadline=2.0,
            deadline_header="X-Request-Timeout-Ms",
            hooks=[],
        ) as client:
            assert client.get("/x").status_code == 200
    left = [int(r.headers["x-request-timeout-ms"]) for r in server.requests]
    assert len(left) == 3
    assert 1500 < left[0] <= 2000
    assert left[0] > left[1] > left[2] > 0


# -- retry budget ---------------------------------------------------------------------------


def test_retry_budget_caps_attempts_during_a_full_outage(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Full outage (503 everywhere): total attempts <= 1.2 x requests + floor, not 3 x requests."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.status(503))
    requests = 150
    floor_rate, window = 2.0, 2.0
    with no_fd_leak():
        with ServiceClient(
            "outage",
            url=server.url,
            retry=RetryPolicy(attempts=3, backoff_base=0.001, backoff_cap=0.002),
            budget=BudgetPolicy(ratio=0.2, window=window, min_retries_per_second=floor_rate),
            breaker=None,
            hooks=[],
        ) as client:
            with timed() as took:
                codes = {client.get("/x").status_code for _ in range(requests)}
            budget = client.resilient.runtime.budget
            assert budget is not None
            exhausted = budget.exhausted_count
    attempts = server.count()
    assert codes == {503}
    assert attempts <= 1.2 * requests + floor_rate * (took[0] + window)
    assert attempts > requests  # the budget did allow some retries
    assert exhausted > 0


# -- hedging --------------------------------------------------------------------------------


async def _latencies(client: AsyncServiceClient, n: int, method: str = "GET") -> list[float]:
    out = []
    for i in range(n):
        started = time.monotonic()
        response = await client.request(method, f"/h/{i}")
        out.append(time.monotonic() - started)
        assert response.status_code == 200
    return out


@pytest.mark.anyio
async def test_hedging_cuts_the_p99_a_slow_pod_causes(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """One pod of three answers after 1 s: with a 20 ms hedge the p99 falls well below it.

    The slow pod is slow enough (1 s, not 0.3 s) that a generous bound on the hedged p99
    (0.5 s) holds on a loaded machine and still fails if one call waited for that pod."""
    (a, b, c), kw = trio
    a.set_fault(Fault.slow(1.0))
    outlier_off = OutlierPolicy(enabled=False)  # keep the slow pod in rotation
    with no_fd_leak():
        async with AsyncServiceClient(
            "plain", balancing={"strategy": "round_robin"}, breaker=None, outlier=outlier_off, **kw
        ) as plain:
            await _latencies(plain, 3)  # warm up: one pool and connection per pod
            unhedged = await _latencies(plain, 12)
        async with AsyncServiceClient(
            "hedged",
            balancing={"strategy": "round_robin"},
            hedge=HedgePolicy(delay=0.02),
            breaker=None,
            outlier=outlier_off,
            **kw,
        ) as hedged:
            await _latencies(hedged, 3)
            gets_before = a.count() + b.count() + c.count()
            with_hedge = await _latencies(hedged, 12)
            gets = a.count() + b.count() + c.count() - gets_before
        _quiesce(a, b, c)
    assert _p99(unhedged) >= 0.95  # the slow pod was in the path without hedging
    assert _p99(with_hedge) < 0.5
    assert _p99(with_hedge) < 0.5 * _p99(unhedged)
    assert 12 <= gets <= 24  # at most one hedge per call


@pytest.mark.anyio
async def test_hedging_never_duplicates_a_post(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """A POST is not hedged: each arrives once in total, and the slow pod's share waits for it."""
    (a, b, c), kw = trio
    a.set_fault(Fault.slow(0.3))
    with no_fd_leak():
        async with AsyncServiceClient(
            "hedged-post",
            balancing={"strategy": "round_robin"},
            hedge=HedgePolicy(delay=0.02),
            breaker=None,
            **kw,
        ) as client:
            latencies = await _latencies(client, 6, method="POST")
        _quiesce(a, b, c)
    assert a.count("POST") + b.count("POST") + c.count("POST") == 6
    assert a.count("POST") == 2  # round robin: its share, sent once each
    assert sum(t >= 0.28 for t in latencies) == 2  # and those waited the full 0.3 s
