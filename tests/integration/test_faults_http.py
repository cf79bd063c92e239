"""Every HTTP fault of the FaultServer against a real ServiceClient (issue 7).

Each test names the fault, states what the client must do about it (retry elsewhere,
retry the same endpoint, fall back, or raise a specific error within the deadline) and
checks that no socket leaks and that no POST is sent twice unless it carries an
``Idempotency-Key``.
"""

from __future__ import annotations

import contextlib
import email.utils
import math
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from svcclient import DeadlineExceeded, RequestFailedError, RetryPolicy, ServiceClient
from svcclient._classify import classify_error
from svcclient.testing._faultserver import Fault, FaultServer
from tests.integration.netutil import Nameserver, pods_behind_dns, timed, who

pytestmark = pytest.mark.integration

MakeServer = Callable[..., FaultServer]
LeakCheck = Callable[..., contextlib.AbstractContextManager[None]]
# Slack for timing bounds: two shared cores, other test suites running alongside.
SLACK = 0.6


def _cluster(
    fault_server: MakeServer, dnsmasq: Callable[..., Nameserver], n: int
) -> tuple[list[FaultServer], dict[str, Any]]:
    """``n`` servers a, b, c on 127.0.0.2.. sharing a port behind ``api.svc.test``."""
    return pods_behind_dns(fault_server, dnsmasq, n, hooks=[])


def _quiesce(*servers: FaultServer) -> None:
    """Abort the servers' own connections (a stalled handler keeps its socket for seconds).

    The servers run in this process, so their sockets count in /proc/self/fd; dropping them
    leaves only client-side sockets for ``no_fd_leak`` to judge.
    """
    for server in servers:
        if server.listening:
            server.refuse()
            server.resume()


# -- refuse --------------------------------------------------------------------------------


def test_refused_endpoint_get_and_post_go_elsewhere_once(
    fault_server: MakeServer, dnsmasq: Callable[..., Nameserver], no_fd_leak: LeakCheck
) -> None:
    """Refuse: GET and POST retry on the other endpoint; each POST arrives exactly once."""
    (a, b), kw = _cluster(fault_server, dnsmasq, 2)
    a.refuse()
    with no_fd_leak():
        with ServiceClient("refuse", breaker=None, **kw) as client:
            gets = [who(client.get("/g")) for _ in range(8)]
            posts = [who(client.post("/p", json={"n": i})) for i in range(8)]
        _quiesce(a, b)
    assert gets == ["b"] * 8 and posts == ["b"] * 8
    assert b.count("GET", "/g") == 8
    assert b.count("POST", "/p") == 8  # connect errors never reached a server: no duplicate


def test_refused_only_endpoint_raises_connect_error_within_deadline(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Refuse, nowhere else to go: httpx.ConnectError (connect_refused) well within the deadline."""
    server = fault_server("127.0.0.2")
    server.refuse()
    with no_fd_leak():
        with ServiceClient(
            "refuse-only", url=server.url, deadline=2.0, breaker=None, hooks=[]
        ) as client:
            with timed() as took, pytest.raises(httpx.ConnectError) as info:
                client.get("/x")
    assert classify_error(info.value) == "connect_refused"
    assert not isinstance(info.value, RequestFailedError)  # httpx's own error reaches the caller
    assert took[0] < 2.0


# -- faults after the request was read: reset, close, truncated, malformed -----------------

AFTER_SEND = [
    pytest.param(Fault.reset(), "reset", id="reset"),
    pytest.param(Fault.close(), "reset", id="close-without-response"),
    pytest.param(Fault.truncated(), "reset", id="truncated"),
    pytest.param(Fault.malformed(), "protocol_error", id="malformed"),
]


@pytest.mark.parametrize(("fault", "error_type"), AFTER_SEND)
def test_fault_after_send_retries_get_on_the_same_endpoint(
    fault_server: MakeServer, no_fd_leak: LeakCheck, fault: Fault, error_type: str
) -> None:
    """Reset/close/truncated/malformed once: a GET is retried and the caller gets the 200."""
    server = fault_server("127.0.0.2", name="one")
    server.push_faults([fault])
    with no_fd_leak():
        with ServiceClient("after-get", url=server.url, timeout=1.0, hooks=[]) as client:
            with timed() as took:
                response = client.get("/items/1")
        _quiesce(server)
    assert response.status_code == 200
    assert response.json() == {"server": "one", "method": "GET", "path": "/items/1"}
    assert server.count("GET", "/items/1") == 2
    assert took[0] < 1.0


@pytest.mark.parametrize(("fault", "error_type"), AFTER_SEND)
def test_fault_after_send_is_not_retried_for_post(
    fault_server: MakeServer, no_fd_leak: LeakCheck, fault: Fault, error_type: str
) -> None:
    """Reset/close/truncated/malformed on a POST: httpx's error at once, the server saw it once."""
    server = fault_server("127.0.0.2")
    server.push_faults([fault])
    with no_fd_leak():
        with ServiceClient("after-post", url=server.url, timeout=1.0, hooks=[]) as client:
            with timed() as took, pytest.raises(httpx.TransportError) as info:
                client.post("/orders", json={"sku": 1})
        _quiesce(server)
    assert isinstance(info.value, httpx.ReadError | httpx.RemoteProtocolError)
    assert classify_error(info.value) == error_type
    assert server.count("POST", "/orders") == 1
    assert took[0] < 1.0


@pytest.mark.parametrize(("fault", "error_type"), AFTER_SEND)
def test_fault_after_send_retries_post_with_idempotency_key(
    fault_server: MakeServer, no_fd_leak: LeakCheck, fault: Fault, error_type: str
) -> None:
    """With an Idempotency-Key the POST is retried, and both copies carry the same key."""
    server = fault_server("127.0.0.2")
    server.push_faults([fault])
    with no_fd_leak():
        with ServiceClient("after-key", url=server.url, timeout=1.0, hooks=[]) as client:
            response = client.post(
                "/orders", json={"sku": 1}, headers={"Idempotency-Key": "order-17"}
            )
        _quiesce(server)
    assert response.status_code == 200
    assert server.count("POST", "/orders") == 2
    assert [r.headers["idempotency-key"] for r in server.requests] == ["order-17"] * 2


# -- stall before headers ------------------------------------------------------------------


def test_stall_before_headers_get_is_answered_by_another_endpoint(
    fault_server: MakeServer, dnsmasq: Callable[..., Nameserver], no_fd_leak: LeakCheck
) -> None:
    """Stall before headers on one pod: GETs are cut there at ``timeout`` and succeed elsewhere."""
    (a, b), kw = _cluster(fault_server, dnsmasq, 2)
    a.set_fault(Fault.stall_before_headers(3.0))
    latencies: list[float] = []
    with no_fd_leak():
        with ServiceClient("stall-get", timeout=0.3, deadline=2.0, breaker=None, **kw) as client:
            answered = []
            for _ in range(6):
                with timed() as took:
                    answered.append(who(client.get("/s")))
                latencies.append(took[0])
        _quiesce(a, b)
    assert answered == ["b"] * 6
    assert a.count() >= 1  # some calls did try the stalled pod first
    assert max(latencies) < 0.3 + SLACK  # one cut attempt at most, never the 3 s stall


def test_stall_before_headers_post_raises_read_timeout_once(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Stall before headers on a POST: httpx.ReadTimeout after ~timeout, no second copy sent."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.stall_before_headers(3.0))
    with no_fd_leak():
        with ServiceClient(
            "stall-post", url=server.url, timeout=0.4, deadline=2.0, breaker=None, hooks=[]
        ) as client:
            with timed() as took, pytest.raises(httpx.ReadTimeout):
                client.post("/orders", json={"sku": 2})
        _quiesce(server)
    assert server.count("POST", "/orders") == 1
    assert 0.35 <= took[0] < 0.4 + SLACK


# -- stall mid-body ------------------------------------------------------------------------


def test_stall_mid_body_once_is_retried_and_the_body_is_whole(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Stall mid-body once: the body is read inside the attempt, so the GET is retried."""
    server = fault_server("127.0.0.2", name="mid")
    server.push_faults([Fault.stall_mid_body(3.0)])
    with no_fd_leak():
        with ServiceClient(
            "mid-once", url=server.url, timeout=0.3, deadline=2.0, hooks=[]
        ) as client:
            with timed() as took:
                response = client.get("/big")
        _quiesce(server)
    assert response.json()["server"] == "mid"
    assert server.count("GET", "/big") == 2
    assert took[0] < 0.3 + SLACK


def test_stall_mid_body_forever_raises_deadline_exceeded_in_time(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Stall mid-body on every attempt: DeadlineExceeded at the deadline, all read_timeout."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.stall_mid_body(3.0))
    with no_fd_leak():
        with ServiceClient(
            "mid-forever",
            url=server.url,
            timeout=0.3,
            deadline=1.0,
            retry=RetryPolicy(attempts=6, backoff_base=0.01, backoff_cap=0.05),
            breaker=None,
            hooks=[],
        ) as client:
            with timed() as took, pytest.raises(DeadlineExceeded) as info:
                client.get("/big")
        _quiesce(server)
    assert 0.9 <= took[0] < 1.0 + SLACK
    outcomes = [a.outcome for a in info.value.attempts]
    assert len(outcomes) >= 3 and set(outcomes) == {"read_timeout"}
    assert server.count() == len(outcomes)


def test_stall_mid_body_post_is_not_retried(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Stall mid-body on a POST: ReadTimeout, and the server counted exactly one POST."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.stall_mid_body(3.0))
    with no_fd_leak():
        with ServiceClient(
            "mid-post", url=server.url, timeout=0.3, deadline=2.0, breaker=None, hooks=[]
        ) as client:
            with timed() as took, pytest.raises(httpx.ReadTimeout):
                client.post("/orders", json={"sku": 3})
        _quiesce(server)
    assert server.count("POST", "/orders") == 1
    assert took[0] < 0.3 + SLACK


# -- 5xx -------------------------------------------------------------------------------------


def test_500_is_final_and_goes_to_the_fallback(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """A 500 is not retried (not transient); with a fallback the caller gets the fallback value."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.status(500, body="boom"))
    causes: list[BaseException] = []

    def fallback(request: httpx.Request, exc: BaseException) -> httpx.Response:
        causes.append(exc)
        return httpx.Response(200, json={"cached": True}, request=request)

    with no_fd_leak():
        with ServiceClient(
            "five-hundred", url=server.url, fallback=fallback, breaker=None, hooks=[]
        ) as client:
            bodies = [client.get(f"/users/{i}").json() for i in range(3)]
    assert bodies == [{"cached": True}] * 3
    assert server.count() == 3  # one attempt per call
    assert all(isinstance(c, httpx.HTTPStatusError) for c in causes)
    assert {c.response.status_code for c in causes if isinstance(c, httpx.HTTPStatusError)} == {500}


def test_502_on_every_attempt_returns_the_last_502_after_all_attempts(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """502 persistently (no fallback): retried up to ``attempts``, then the 502 is returned."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.status(502, body="bad gateway"))
    with no_fd_leak():
        with ServiceClient(
            "five-oh-two", url=server.url, deadline=2.0, breaker=None, hooks=[]
        ) as client:
            with timed() as took:
                response = client.get("/x")
    assert (response.status_code, response.text) == (502, "bad gateway")
    assert server.count() == 3
    assert took[0] < 2.0


def test_503_on_one_endpoint_is_retried_elsewhere(
    fault_server: MakeServer, dnsmasq: Callable[..., Nameserver], no_fd_leak: LeakCheck
) -> None:
    """503 from one pod: every GET ends 200 from the other; a POST gets the 503 once, unretried."""
    (a, b), kw = _cluster(fault_server, dnsmasq, 2)
    a.set_fault(Fault.status(503))
    with no_fd_leak():
        with ServiceClient("five-oh-three", breaker=None, **kw) as client:
            answered = [who(client.get("/g")) for _ in range(8)]
            posts = [client.post("/p", json={}).status_code for _ in range(4)]
    assert answered == ["b"] * 8
    assert a.count("POST", "/p") + b.count("POST", "/p") == 4
    assert posts.count(503) == a.count("POST", "/p")


# -- Retry-After -------------------------------------------------------------------------------


def test_503_retry_after_seconds_is_waited_for(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """503 with Retry-After: 0.6 (seconds form): the retry waits >= 0.6 s, then succeeds."""
    server = fault_server("127.0.0.2")
    server.push_faults([Fault.status(503, retry_after=0.6)])
    with no_fd_leak():
        with ServiceClient("ra-seconds", url=server.url, deadline=3.0, hooks=[]) as client:
            with timed() as took:
                response = client.get("/x")
    assert response.status_code == 200
    assert server.count() == 2
    assert 0.58 <= took[0] < 0.6 + SLACK


def test_503_retry_after_http_date_is_waited_for(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """503 with Retry-After as an HTTP-date 2-3 s ahead: the retry waits about that long."""
    server = fault_server("127.0.0.2")
    # HTTP dates have one-second resolution: a whole second at least 2 s ahead means a
    # wait in [2 - (time to receive the 503), 3) seconds.
    date = email.utils.formatdate(math.ceil(time.time()) + 2.0, usegmt=True)
    server.push_faults([Fault.status(503, headers={"Retry-After": date})])
    with no_fd_leak():
        with ServiceClient(
            "ra-date", url=server.url, timeout=1.0, deadline=4.0, hooks=[]
        ) as client:
            with timed() as took:
                response = client.get("/x")
    assert response.status_code == 200
    assert server.count() == 2
    assert 1.0 <= took[0] < 3.0 + SLACK


def test_retry_after_beyond_the_deadline_returns_the_503_at_once(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Retry-After longer than the time left: no retry, no sleep; the 503 comes back at once."""
    server = fault_server("127.0.0.2")
    server.set_fault(Fault.status(503, retry_after=30))
    with no_fd_leak():
        with ServiceClient("ra-long", url=server.url, deadline=2.0, hooks=[]) as client:
            with timed() as took:
                response = client.get("/x")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert server.count() == 1
    assert took[0] < 1.5  # generous, and below the 2 s a wait until the deadline would take


# -- slow by a distribution ------------------------------------------------------------------


def test_slow_by_a_distribution_is_cut_at_the_attempt_timeout(
    fault_server: MakeServer, no_fd_leak: LeakCheck
) -> None:
    """Latency mixture (90 % ~20 ms, 10 % 2 s): the 2 s tail is cut at ``timeout`` and retried."""
    rng = random.Random(7)

    def latency() -> float:
        return 2.0 if rng.random() < 0.1 else rng.expovariate(1 / 0.02)

    server = fault_server("127.0.0.2")
    server.set_fault(Fault.slow(latency))
    timeout = 0.25
    latencies: list[float] = []
    with no_fd_leak():
        with ServiceClient(
            "slow-dist",
            url=server.url,
            timeout=timeout,
            deadline=1.5,
            retry=RetryPolicy(attempts=4, backoff_base=0.01, backoff_cap=0.05),
            breaker=None,
            hooks=[],
        ) as client:
            for i in range(30):
                with timed() as took:
                    assert client.get(f"/d/{i}").status_code == 200
                latencies.append(took[0])
        _quiesce(server)
    assert server.count() - 30 >= 2  # the seeded tail was hit, and each hit was retried
    # No call waits for a 2 s answer: at most two cut attempts, then a fast one.
    assert max(latencies) < 2 * timeout + SLACK
    assert sorted(latencies)[14] < timeout  # the median call was not cut
