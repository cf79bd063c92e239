"""Active health checks against real loopback servers (issue 5)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from svcclient import AsyncServiceClient, OutlierPolicy, ServiceClient
from svcclient._endpoint import Endpoint
from svcclient.testing._faultserver import FaultServer
from tests.integration.netutil import HOSTS
from tests.integration.test_pipeline_dns import trio  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def _wait_for(predicate: Callable[[], bool], limit: float = 3.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_failing_health_check_takes_an_endpoint_out_and_a_pass_brings_it_back(
    trio: list[FaultServer],  # noqa: F811
    dnsmasq: Callable[..., object],
) -> None:
    """With no user traffic, a refusing pod leaves rotation and returns when it recovers."""
    port = trio[0].port
    dns = dnsmasq({"users.svc.test": list(HOSTS)}, ttl=30)
    outlier = OutlierPolicy(health_check_path="/healthz", health_check_interval=0.2)
    with ServiceClient(
        "users",
        url=f"http://users.svc.test:{port}",
        dns_nameservers=[dns.nameserver],  # type: ignore[attr-defined]
        outlier=outlier,
        hooks=[],
    ) as client:
        client.get("/warm")  # resolves DNS: the checker now knows three endpoints
        balancer = client.resilient.runtime.balancer
        sick = Endpoint("127.0.0.3", port)
        trio[1].refuse()
        assert _wait_for(lambda: sick in balancer.ejected())
        codes = [client.get("/x").status_code for _ in range(6)]
        assert trio[1].count(path="/x") == 0 and codes == [200] * 6
        trio[1].resume()
        assert _wait_for(lambda: sick not in balancer.ejected())
    assert trio[0].count(path="/healthz") >= 2


@pytest.mark.anyio
async def test_async_health_checks_probe_the_health_path(
    fault_server: Callable[..., FaultServer],
) -> None:
    """The async transport runs its probes as a task and cancels it on aclose."""
    server = fault_server("127.0.0.2", name="h")
    outlier = OutlierPolicy(health_check_path="/ready", health_check_interval=0.1)
    async with AsyncServiceClient("h", url=server.url, outlier=outlier, hooks=[]) as client:
        await client.get("/x")
        deadline = time.monotonic() + 3
        while server.count(path="/ready") < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    seen = server.count(path="/ready")
    assert seen >= 2
    time.sleep(0.3)
    assert server.count(path="/ready") == seen  # the task stopped with the client


def test_a_closed_sync_checker_sends_no_more_probes_in_its_round() -> None:
    """Once closed, the sync checker stops between two probes of a round, as the async
    one does (it used to probe every endpoint due before looking)."""
    import threading
    from types import SimpleNamespace

    import httpx

    from svcclient._transports.health import HealthChecker

    due = [Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80), Endpoint("10.0.0.3", 80)]
    marked: list[tuple[Endpoint, bool]] = []
    sent: list[Endpoint] = []
    rounds = iter([due])
    rt = SimpleNamespace(
        name="svc",
        base_url=httpx.URL("http://svc"),
        config=SimpleNamespace(
            timeout=1.0,
            outlier=SimpleNamespace(health_check_path="/h", health_check_interval=60.0),
        ),
        balancer=SimpleNamespace(
            due_health_checks=lambda: next(rounds, []),
            mark_health=lambda endpoint, healthy: marked.append((endpoint, healthy)),
        ),
    )
    stopping = threading.Event()
    checker: list[HealthChecker] = []

    def send(endpoint: Endpoint, request: httpx.Request) -> httpx.Response:
        sent.append(endpoint)
        stopping.wait(5.0)
        checker[0]._stop.set()  # closed while this probe was in flight
        return httpx.Response(200, request=request)

    checker.append(HealthChecker(rt, send))  # type: ignore[arg-type]
    stopping.set()
    checker[0].close()
    assert sent == due[:1]
    assert marked == [(due[0], True)]
