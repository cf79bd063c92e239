"""The circuit breaker in the HTTP pipeline against a real local server (issue 3).

A server starts failing, the breaker opens, calls are rejected fast without reaching the
server, fallback values are returned, the server recovers and a half-open probe closes the
breaker. A small policy (4 calls, 0.5 s reset) keeps each story to about a second.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from svcclient import BreakerPolicy, CircuitBreaker, CircuitOpenError, ServiceClient, breakers
from svcclient.testing._faultserver import Fault, FaultServer
from tests.integration.netutil import timed

pytestmark = pytest.mark.integration

MakeServer = Callable[..., FaultServer]
LeakCheck = Callable[..., contextlib.AbstractContextManager[None]]
RESET = 0.5
POLICY = BreakerPolicy(volume_threshold=4, error_threshold_percentage=50, reset_timeout=RESET)


def _fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
    return httpx.Response(
        200, json={"fallback": True, "cause": type(exc).__name__}, request=request
    )


def _transitions(breaker: CircuitBreaker) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    breaker.on("state_change", lambda old, new: seen.append((old, new)))
    return seen


def _wait_half_open(breaker: CircuitBreaker) -> None:
    """Sleep until the open breaker would admit a probe (bounded by the reset timeout)."""
    time.sleep(min(breaker.retry_after(), RESET) + 0.05)


def _fail_until_open(client: ServiceClient, breaker: CircuitBreaker, limit: int = 20) -> int:
    """Call until the breaker opens; return how many calls it took (at most ``limit``)."""
    for n in range(1, limit + 1):
        client.get("/fail")
        if breaker.state == "open":
            return n
    raise AssertionError(f"breaker still {breaker.state} after {limit} failing calls")


def test_breaker_opens_rejects_without_traffic_falls_back_and_closes_again(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Failing server: open, no requests while open, fallback values, one probe closes it."""
    server = fault_server("127.0.0.2", name="users")
    with no_fd_leak():
        with ServiceClient(
            "users-breaker", url=server.url, breaker=POLICY, fallback=_fallback, hooks=[]
        ) as client:
            breaker = breakers.get("users-breaker")
            seen = _transitions(breaker)
            assert [client.get("/ok").json()["server"] for _ in range(4)] == ["users"] * 4

            server.set_fault(Fault.status(500))
            calls = _fail_until_open(client, breaker)
            assert calls <= 5  # 4 ok + 4 failures = 50 %: open on the 4th failure
            before = server.count()

            bodies = []
            with timed() as took:
                for _ in range(20):
                    bodies.append(client.get("/while-open").json())
            assert took[0] < RESET  # all rejected before half-open could start
            assert server.count() == before  # the server saw nothing while open
            assert bodies == [{"fallback": True, "cause": "CircuitOpenError"}] * 20

            server.set_fault(Fault.ok())
            _wait_half_open(breaker)
            probe = client.get("/probe")
            assert probe.json()["server"] == "users"
            assert breaker.state == "closed"
            after = [client.get("/after").json()["server"] for _ in range(5)]
    assert after == ["users"] * 5
    assert server.count(path="/probe") == 1
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failing_probe_reopens_and_the_server_sees_only_the_probe(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Still failing after the reset timeout: one probe reaches the server, the breaker reopens."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.status(500))  # not retried: the probe's caller sees the 500
    with no_fd_leak():
        with ServiceClient(
            "probe-fails", url=server.url, breaker=POLICY, fallback=_fallback, hooks=[]
        ) as client:
            breaker = breakers.get("probe-fails")
            _fail_until_open(client, breaker)
            _wait_half_open(breaker)
            before = server.count()
            causes = [client.get("/again").json()["cause"] for _ in range(8)]
            assert server.count() == before + 1
            assert breaker.state == "open"
            assert 0.3 < breaker.retry_after() <= RESET
    # The probe's 500 is a final failure status, so its caller gets the fallback too.
    assert causes == ["HTTPStatusError"] + ["CircuitOpenError"] * 7


def test_open_breaker_raises_circuit_open_error_fast_without_fallback(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """No fallback: CircuitOpenError naming the service and the wait, without an attempt."""
    server = fault_server("127.0.0.2")
    server.refuse()  # a dead pod: connect errors count as failures too
    with no_fd_leak():
        with ServiceClient("dead-pod", url=server.url, breaker=POLICY, hooks=[]) as client:
            breaker = breakers.get("dead-pod")
            for _ in range(4):
                with contextlib.suppress(httpx.ConnectError, CircuitOpenError):
                    client.get("/x")
            assert breaker.state == "open"
            durations = []
            for _ in range(50):
                started = time.perf_counter()
                with pytest.raises(CircuitOpenError) as info:
                    client.get("/x")
                durations.append(time.perf_counter() - started)
    assert info.value.service == "dead-pod"
    assert 0 < info.value.retry_after <= RESET
    # Generous (the sub-ms cost is benchmarks' business): an admitted GET to the dead pod
    # would connect, fail and back off (jittered, up to 0.05 + 0.1 s) before its retries.
    assert statistics.median(durations) < 0.02


def test_half_open_admits_one_probe_among_concurrent_callers(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Half-open with 6 threads calling at once: one probe reaches the server, 5 are rejected."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.status(500))
    outcomes: list[str] = []
    lock = threading.Lock()
    with no_fd_leak():
        with ServiceClient("probe-race", url=server.url, breaker=POLICY, hooks=[]) as client:
            breaker = breakers.get("probe-race")
            _fail_until_open(client, breaker)
            server.set_fault(Fault.slow(0.3))  # recovered, but the probe takes a while
            _wait_half_open(breaker)
            before = server.count()
            start = threading.Barrier(6)

            def call() -> None:
                start.wait(5)
                try:
                    result = str(client.get("/race").status_code)
                except CircuitOpenError:
                    result = "rejected"
                with lock:
                    outcomes.append(result)

            threads = [threading.Thread(target=call) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(5)
            assert breaker.state == "closed"
    assert sorted(outcomes) == ["200"] + ["rejected"] * 5
    assert server.count() == before + 1


def test_breaker_is_shared_by_service_name_across_clients(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """A second client for the same service sees the open breaker and sends nothing."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.status(500))
    with no_fd_leak():
        with ServiceClient("shared-svc", url=server.url, breaker=POLICY, hooks=[]) as first:
            _fail_until_open(first, breakers.get("shared-svc"))
        before = server.count()
        with ServiceClient("shared-svc", url=server.url, breaker=POLICY, hooks=[]) as second:
            with pytest.raises(CircuitOpenError):
                second.get("/x")
    assert server.count() == before
