"""Client-side balancing, affinity and outlier ejection over three real pods (issue 5).

Three FaultServers on 127.0.0.2-4 share one port behind one DNS name, as the pods of a
headless Service do. Concurrency comes from a few asyncio tasks so that in-flight counts
matter to ``least_loaded`` (threads are used only where a thread race is the point); every
loop is bounded in count and every wait in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from svcclient import (
    AsyncServiceClient,
    BalancingPolicy,
    Endpoint,
    Hooks,
    OutlierPolicy,
    ServiceClient,
    breakers,
)
from svcclient._transports.pinned import PinnedTransport
from svcclient.testing._faultserver import Fault, FaultServer
from tests.integration.netutil import Nameserver, pods_behind_dns, who

pytestmark = pytest.mark.integration

MakeServer = Callable[..., FaultServer]
LeakCheck = Callable[..., contextlib.AbstractContextManager[None]]


@pytest.fixture
def trio(
    fault_server: MakeServer, dnsmasq: Callable[..., Nameserver]
) -> tuple[list[FaultServer], dict[str, Any]]:
    """Servers a, b, c on 127.0.0.2-4 behind ``api.svc.test``, and the client kwargs."""
    return pods_behind_dns(fault_server, dnsmasq, 3)


def _in_threads(
    call: Callable[[int], str], threads: int, per_thread: int, timeout: float = 20.0
) -> list[str]:
    """Run ``call(i)`` ``threads x per_thread`` times from ``threads`` threads; the results
    (or exception names) in any order. Every thread is joined within ``timeout``."""
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        start.wait(5)
        for n in range(per_thread):
            try:
                result = call(t * per_thread + n)
            except Exception as exc:  # reported as a result; the assertions name it
                result = type(exc).__name__
            with lock:
                results.append(result)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    deadline = time.monotonic() + timeout
    for th in pool:
        th.join(max(0.0, deadline - time.monotonic()))
    assert not any(th.is_alive() for th in pool), "worker threads did not finish in time"
    return results


class _TrackedPools:
    """Replaces the per-endpoint pool class so a test can see every pool built and closed.

    ``delay`` slows construction down to widen a check-then-set race window. At teardown
    every pool left unclosed is closed here, so a leak the test pins cannot finalise its
    sockets (and raise ResourceWarning) in some later test.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built: list[PinnedTransport] = []
        self.closed: set[int] = set()
        self.delay = 0.0
        tracker = self

        class Tracked(PinnedTransport):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                if tracker.delay:
                    time.sleep(tracker.delay)
                super().__init__(*args, **kwargs)
                tracker.built.append(self)

            def close(self) -> None:
                tracker.closed.add(id(self))
                super().close()

        monkeypatch.setattr("svcclient._transports.pinned.PinnedTransport", Tracked)

    def unclosed(self) -> list[PinnedTransport]:
        return [p for p in self.built if id(p) not in self.closed]


@pytest.fixture
def tracked_pools(monkeypatch: pytest.MonkeyPatch) -> Iterator[_TrackedPools]:
    tracker = _TrackedPools(monkeypatch)
    yield tracker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for pool in tracker.unclosed():
            pool.close()
        gc.collect()


class _SteppedClock:
    """``time.monotonic`` plus an offset the test moves forward: ejection times of 30 s pass
    in one ``advance``, while the calls in between take real (and, on a loaded machine,
    unpredictable) time that stays far below 30 s. Outcomes depend on the steps only."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class _Ejections(Hooks):
    """Records (time on ``clock``, host, ejected) for every ejection and return."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.events: list[tuple[float, str, bool]] = []
        self._clock = clock

    def on_ejection(self, service: str, endpoint: Endpoint, ejected: bool) -> None:
        self.events.append((self._clock(), endpoint.host, ejected))


# -- least loaded and round robin under concurrency -----------------------------------------


async def _in_tasks(
    call: Callable[[int], Awaitable[str]], tasks: int, per_task: int, timeout: float = 20.0
) -> list[str]:
    """Run ``call(i)`` ``tasks x per_task`` times from ``tasks`` concurrent tasks; results
    (or exception names) in completion order, all within ``timeout`` seconds."""
    results: list[str] = []

    async def worker(t: int) -> None:
        for n in range(per_task):
            try:
                results.append(await call(t * per_task + n))
            except Exception as exc:  # reported as a result; the assertions name it
                results.append(type(exc).__name__)

    with anyio.fail_after(timeout):
        await asyncio.gather(*(worker(t) for t in range(tasks)))
    return results


@pytest.mark.anyio
async def test_least_loaded_keeps_100_percent_and_starves_the_slow_pod(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """a refuses, b is 50 ms slow, c is healthy: all 120 calls succeed, b gets far less than c."""
    (a, b, c), kw = trio
    a.refuse()
    b.set_fault(Fault.slow(0.05))
    with no_fd_leak():
        async with AsyncServiceClient(
            "p2c",
            balancing=BalancingPolicy(strategy="least_loaded"),
            hooks=[],
            **kw,
        ) as client:
            await client.get("/warm")  # the first DNS resolution (see the cold-start test)

            async def call(i: int) -> str:
                return who(await client.get("/l", params={"i": i}))

            results = await _in_tasks(call, tasks=4, per_task=30)
    assert len(results) == 120
    assert Counter(results) == {"b": b.count(path="/l"), "c": c.count(path="/l")}  # 100 %
    assert b.count(path="/l") < c.count(path="/l") / 2


@pytest.mark.anyio
async def test_round_robin_spreads_within_one_under_concurrency(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """Round robin from 4 concurrent tasks over 3 healthy pods: 60 calls, each pod 20 +- 1."""
    servers, kw = trio
    with no_fd_leak():
        async with AsyncServiceClient(
            "rr", balancing=BalancingPolicy(strategy="round_robin"), hooks=[], **kw
        ) as client:
            await client.get("/warm")

            async def call(i: int) -> str:
                return who(await client.get("/r"))

            results = await _in_tasks(call, tasks=4, per_task=15)
    seen = Counter(results)
    assert sorted(seen) == ["a", "b", "c"]
    assert max(seen.values()) - min(seen.values()) <= 1
    assert sum(s.count(path="/r") for s in servers) == 60


def test_concurrent_first_calls_wait_for_the_first_resolution(
    trio: tuple[list[FaultServer], dict[str, Any]], tracked_pools: _TrackedPools
) -> None:
    """4 threads call a fresh client at once: every call succeeds, none finds no endpoints."""
    _, kw = trio
    with ServiceClient("cold-start", hooks=[], **kw) as client:
        results = _in_threads(lambda i: who(client.get("/c")), threads=4, per_thread=5)
    assert Counter(results).keys() <= {"a", "b", "c"}, Counter(results)


def test_threads_reaching_new_pods_together_leave_no_connection_open(
    trio: tuple[list[FaultServer], dict[str, Any]], tracked_pools: _TrackedPools
) -> None:
    """8 threads on a resolved client: every pool built is closed by close(), none lost."""
    _, kw = trio
    tracked_pools.delay = 0.05  # widen the race window so it shows every run
    with ServiceClient("pool-race", hooks=[], **kw) as client:
        client.get("/warm")  # resolved; one pod has its pool, two are new
        results = _in_threads(lambda i: who(client.get("/p")), threads=8, per_thread=3)
    assert Counter(results).keys() <= {"a", "b", "c"}
    assert len(tracked_pools.built) <= 3  # one pool per pod
    assert tracked_pools.unclosed() == []


# -- affinity -------------------------------------------------------------------------------


def test_affinity_keys_stick_to_one_pod_and_spread_over_pods(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """Each of 40 keys lands on one pod for all its 3 calls; the keys use every pod."""
    _, kw = trio
    placed: dict[str, set[str]] = {}
    with no_fd_leak():
        with ServiceClient(
            "sticky", balancing=BalancingPolicy(strategy="affinity"), hooks=[], **kw
        ) as client:
            # 40 keys: the chance that hashing leaves a pod with none is 3 x (2/3)^40.
            for round_ in range(3):
                for k in range(40):
                    key = f"user-{k}"
                    pod = who(client.get(f"/s/{round_}", extensions={"affinity_key": key}))
                    placed.setdefault(key, set()).add(pod)
    assert all(len(pods) == 1 for pods in placed.values()), placed
    assert {next(iter(p)) for p in placed.values()} == {"a", "b", "c"}


def test_affinity_key_of_a_dead_pod_still_gets_answers(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """The pod a key sticks to starts refusing: every call for the key still succeeds
    elsewhere, and the service's breaker (default policy) stays closed."""
    servers, kw = trio
    by_name = {s.name: s for s in servers}
    with no_fd_leak():
        with ServiceClient(
            "sticky-dead", balancing=BalancingPolicy(strategy="affinity"), hooks=[], **kw
        ) as client:
            ext = {"affinity_key": "user-42"}
            home = who(client.get("/home", extensions=ext))
            by_name[home].refuse()
            elsewhere = []
            for _ in range(12):
                try:
                    elsewhere.append(who(client.get("/x", extensions=ext)))
                except httpx.TransportError as exc:
                    elsewhere.append(type(exc).__name__)
            state = breakers.get("sticky-dead").state
    assert len(elsewhere) == 12
    assert set(elsewhere) <= {"a", "b", "c"} - {home}, elsewhere
    assert state == "closed"


def test_affinity_header_from_config_sticks(
    trio: tuple[list[FaultServer], dict[str, Any]],
) -> None:
    """affinity_header='X-User-Id': calls with the same header value go to the same pod."""
    _, kw = trio
    policy = BalancingPolicy(strategy="affinity", affinity_header="X-User-Id")
    with ServiceClient("sticky-header", balancing=policy, hooks=[], **kw) as client:
        pods = {who(client.get("/h", headers={"X-User-Id": "u-7"})) for _ in range(6)}
    assert len(pods) == 1


# -- outlier ejection -----------------------------------------------------------------------


def test_failing_pod_is_ejected_and_returns_after_the_ejection_time(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """a answers 503: after 3 failures it gets no traffic; 30 s later (a stepped clock),
    healed, it serves again."""
    (a, b, c), kw = trio
    a.set_fault(Fault.status(503))
    clock = _SteppedClock()
    events = _Ejections(clock)
    outlier = OutlierPolicy(consecutive_failures=3, base_ejection_time=30.0)
    with no_fd_leak():
        with ServiceClient(
            "eject",
            balancing={"strategy": "round_robin"},
            outlier=outlier,
            breaker=None,
            hooks=[events],
            clock=clock,
            **kw,
        ) as client:
            first = [client.get("/1").status_code for _ in range(12)]
            assert [(host, out) for _, host, out in events.events] == [("127.0.0.2", True)]
            ejected_at = events.events[0][0]
            assert a.count() == 3
            during = [who(client.get("/2")) for _ in range(12)]
            assert clock() - ejected_at < 30.0  # still inside the ejection time
            a.set_fault(Fault.ok())
            clock.advance(31.0)
            after = Counter(who(client.get("/3")) for _ in range(12))
    assert first == [200] * 12  # the 503s were retried on the other pods
    assert "a" not in during and a.count(path="/2") == 0
    assert after["a"] == 4  # back in the round-robin rotation
    assert [out for _, _, out in events.events] == [True, False]


def test_pod_still_failing_on_return_is_ejected_again_for_longer(
    trio: tuple[list[FaultServer], dict[str, Any]], no_fd_leak: LeakCheck
) -> None:
    """Back from ejection but still 503: one probe request, then out again for 2 x 30 s
    (a stepped clock: the calls' real duration does not count against the windows)."""
    (a, b, c), kw = trio
    a.set_fault(Fault.status(503))
    clock = _SteppedClock()
    events = _Ejections(clock)
    outlier = OutlierPolicy(consecutive_failures=3, base_ejection_time=30.0)
    with no_fd_leak():
        with ServiceClient(
            "re-eject",
            balancing={"strategy": "round_robin"},
            outlier=outlier,
            breaker=None,
            hooks=[events],
            clock=clock,
            **kw,
        ) as client:
            for _ in range(12):
                client.get("/1")
            assert len(events.events) == 1
            clock.advance(31.0)  # > base: back on probation
            codes = [client.get("/2").status_code for _ in range(12)]
            assert len(events.events) == 3
            clock.advance(31.0)  # > base, < 2 x base
            later = [client.get("/3").status_code for _ in range(6)]
    assert codes == [200] * 12 and later == [200] * 6
    assert a.count(path="/2") == 1  # on probation: the first failure re-ejects at once
    assert a.count(path="/3") == 0  # the second ejection lasts 60 s, not 30 s
    assert [out for _, _, out in events.events] == [True, False, True]
