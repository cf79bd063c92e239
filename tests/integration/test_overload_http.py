"""Adaptive throttling and the adaptive concurrency limit against a real loopback server
of bounded capacity (``benchmarks._capacity``: W workers, a bounded queue, 503 beyond it),
sync and async (asyncio and trio). Every load loop is bounded in count and in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry

from benchmarks._capacity import Capacity, CapacityServer
from svcclient import (
    AsyncServiceClient,
    ConcurrencyLimitError,
    ConcurrencyPolicy,
    RetryPolicy,
    ServiceClient,
    ServiceConfig,
    ThrottledError,
    ThrottlePolicy,
)

pytestmark = pytest.mark.integration

LOOP_SECONDS = 2.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def capacity_server() -> Iterator[Callable[[Capacity], CapacityServer]]:
    started: list[CapacityServer] = []

    def make(cap: Capacity) -> CapacityServer:
        server = CapacityServer(cap).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def _metric(registry: CollectorRegistry, name: str, service: str) -> float | None:
    return registry.get_sample_value(name, {"target_service": service})


SHEDDING = Capacity(workers=1, service_time=0.05, shed_time=0.001, queue_limit=0)
SLOW_PAIR = Capacity(workers=2, service_time=0.05, shed_time=0.001, queue_limit=1000)


def _throttled_config(name: str, url: str, **kw: Any) -> ServiceConfig:
    return ServiceConfig(
        name,
        url=url,
        retry=RetryPolicy(attempts=1),
        breaker=None,
        throttle=ThrottlePolicy(min_requests=5),
        **kw,
    )


# -- throttling -----------------------------------------------------------------------------


def test_throttle_sheds_locally_while_the_server_sheds(
    capacity_server: Callable[[Capacity], CapacityServer],
) -> None:
    """Against a server that can serve one call at a time and sheds the rest, the throttle
    rejects some calls locally: they reach the fallback as ThrottledError, never reach the
    server, and are counted in svcclient_throttled_requests_total."""
    server = capacity_server(SHEDDING)
    registry = CollectorRegistry()
    seen: list[BaseException] = []
    lock = threading.Lock()

    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        with lock:
            seen.append(exc)
        return httpx.Response(299, request=request)

    name = "overload-throttle-sync"
    config = _throttled_config(name, server.url, fallback=fallback)
    calls = [0]
    with ServiceClient(config, registry=registry) as client:
        stop_at = time.monotonic() + LOOP_SECONDS

        def worker() -> None:
            for _ in range(40):
                if time.monotonic() > stop_at:
                    return
                client.get("/work")
                with lock:
                    calls[0] += 1

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(LOOP_SECONDS + 10)
    throttled = [e for e in seen if isinstance(e, ThrottledError)]
    assert throttled, "the throttle never rejected a call"
    assert all(e.service == name and 0 < e.probability <= 0.9 for e in throttled)
    stats = server.stats()
    assert stats["served"] + stats["shed"] == calls[0] - len(throttled)
    assert _metric(registry, "svcclient_throttled_requests_total", name) == len(throttled)


def test_free_shedding_server_says_no_at_once_without_a_worker(
    capacity_server: Callable[[Capacity], CapacityServer],
) -> None:
    """The benchmark's free-shedding server (shed_time=0): while its one worker serves, a
    second request is answered 503 at once, and shedding uses no worker time."""
    server = capacity_server(Capacity(workers=1, service_time=1.0, shed_time=0.0, queue_limit=0))
    with (
        httpx.Client(base_url=server.url, timeout=10.0) as busy,
        httpx.Client(base_url=server.url, timeout=10.0) as other,
    ):
        holder = threading.Thread(target=busy.get, args=("/work",))
        holder.start()
        deadline = time.monotonic() + 5.0
        while server.stats()["max_active"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        assert other.get("/work").status_code == 503
        shed_took = time.monotonic() - started
        holder.join(10.0)
    stats = server.stats()
    assert stats["served"] == 1 and stats["shed"] == 1
    assert stats["busy_shed_us"] == 0
    assert shed_took < 0.9  # not behind the 1 s request in service


def test_throttle_never_rejects_a_healthy_server(
    capacity_server: Callable[[Capacity], CapacityServer],
) -> None:
    """A server with room to spare accepts everything, so nothing is throttled."""
    server = capacity_server(Capacity(workers=8, service_time=0.001, queue_limit=100))
    registry = CollectorRegistry()
    name = "overload-throttle-healthy"
    with ServiceClient(_throttled_config(name, server.url), registry=registry) as client:
        for _ in range(60):
            assert client.get("/work").status_code == 200
        throttle = client.resilient.runtime.throttle
        assert throttle is not None and throttle.probability() == 0.0
        assert throttle.requests == throttle.accepts == 60
    assert not _metric(registry, "svcclient_throttled_requests_total", name)


def test_throttled_call_raises_without_a_fallback(
    capacity_server: Callable[[Capacity], CapacityServer],
) -> None:
    """With no fallback a throttled call raises ThrottledError (an httpx.TransportError
    naming the service and the request) at once, and the server sees nothing."""
    server = capacity_server(SHEDDING)
    name = "overload-throttle-raise"
    with ServiceClient(_throttled_config(name, server.url), registry=CollectorRegistry()) as client:
        throttle = client.resilient.runtime.throttle
        assert throttle is not None
        for _ in range(50):
            throttle.record(False)
        throttle.rng = lambda: 0.0  # lose every draw
        server.reset()
        started = time.perf_counter()
        with pytest.raises(ThrottledError) as info:
            client.get("/work")
        assert time.perf_counter() - started < 0.5
    assert isinstance(info.value, httpx.TransportError)
    assert info.value.service == name and info.value.request.url.path == "/work"
    assert server.stats()["served"] + server.stats()["shed"] == 0


# -- adaptive concurrency limit -------------------------------------------------------------


def _limited_config(name: str, url: str) -> ServiceConfig:
    return ServiceConfig(
        name,
        url=url,
        retry=RetryPolicy(attempts=1),
        concurrency=ConcurrencyPolicy(
            initial_limit=16, max_limit=16, sample_window=0.1, window_samples=3
        ),
    )


def test_adaptive_limit_caps_calls_in_flight_and_shrinks_sync(
    capacity_server: Callable[[Capacity], CapacityServer],
) -> None:
    """Twelve threads against a two-worker server: the server never holds more calls than
    the limit allows, excess calls get ConcurrencyLimitError at once, the limit comes down
    from 16 as queueing shows in the RTTs, and the gauge reports it."""
    server = capacity_server(SLOW_PAIR)
    registry = CollectorRegistry()
    name = "overload-limit-sync"
    rejected: list[float] = []
    ok = [0]
    lock = threading.Lock()
    with ServiceClient(_limited_config(name, server.url), registry=registry) as client:
        stop_at = time.monotonic() + LOOP_SECONDS

        def worker() -> None:
            for _ in range(400):
                if time.monotonic() > stop_at:
                    return
                started = time.perf_counter()
                try:
                    client.get("/work")
                except ConcurrencyLimitError:
                    with lock:
                        rejected.append(time.perf_counter() - started)
                    time.sleep(0.005)  # a rejected caller backs off a little
                else:
                    with lock:
                        ok[0] += 1

        threads = [threading.Thread(target=worker) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(LOOP_SECONDS + 10)
        limiter = client.resilient.runtime.limiter
        assert limiter is not None
        assert limiter.in_flight == 0
        limit = limiter.limit
    assert rejected and ok[0] > 0
    assert max(rejected) < 0.5
    assert server.stats()["max_active"] <= 16
    assert limit < 16
    assert _metric(registry, "svcclient_concurrency_limit", name) == limit


@pytest.mark.anyio
async def test_adaptive_limit_caps_calls_in_flight_async(
    capacity_server: Callable[[Capacity], CapacityServer],
) -> None:
    """The same limiter drives the async transport, under asyncio and trio."""
    server = capacity_server(SLOW_PAIR)
    registry = CollectorRegistry()
    name = "overload-limit-async"
    counts = {"ok": 0, "rejected": 0}
    async with AsyncServiceClient(_limited_config(name, server.url), registry=registry) as client:
        stop_at = time.monotonic() + LOOP_SECONDS

        async def worker() -> None:
            for _ in range(400):
                if time.monotonic() > stop_at:
                    return
                try:
                    await client.get("/work")
                except ConcurrencyLimitError:
                    counts["rejected"] += 1
                    await anyio.sleep(0.005)
                else:
                    counts["ok"] += 1

        with anyio.fail_after(LOOP_SECONDS + 10):
            async with anyio.create_task_group() as tg:
                for _ in range(12):
                    tg.start_soon(worker)
        limiter = client.resilient.runtime.limiter
        assert limiter is not None and limiter.in_flight == 0
        limit = limiter.limit
    assert counts["rejected"] > 0 and counts["ok"] > 0
    assert server.stats()["max_active"] <= 16
    assert limit < 16
    assert _metric(registry, "svcclient_concurrency_limit", name) == limit


@pytest.mark.anyio
async def test_throttle_sheds_locally_async(
    capacity_server: Callable[[Capacity], CapacityServer],
) -> None:
    """Async calls against the shedding server are throttled too, under asyncio and trio;
    throttled calls never reach the server."""
    server = capacity_server(SHEDDING)
    registry = CollectorRegistry()
    name = "overload-throttle-async"
    counts = {"sent": 0, "throttled": 0}
    async with AsyncServiceClient(_throttled_config(name, server.url), registry=registry) as client:
        stop_at = time.monotonic() + LOOP_SECONDS

        async def worker() -> None:
            for _ in range(40):
                if time.monotonic() > stop_at:
                    return
                try:
                    await client.get("/work")
                except ThrottledError:
                    counts["throttled"] += 1
                else:
                    counts["sent"] += 1

        with anyio.fail_after(LOOP_SECONDS + 10):
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(worker)
    assert counts["throttled"] > 0
    stats = server.stats()
    assert stats["served"] + stats["shed"] == counts["sent"]
    assert _metric(registry, "svcclient_throttled_requests_total", name) == counts["throttled"]
