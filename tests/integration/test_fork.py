"""Fork safety (issue 12, finding 3): a client used, then ``os.fork()``, then used in
parent and child (the gunicorn ``--preload`` pattern), against a real loopback echo server.

``Fault.ok`` echoes the path it read, so a unique id in each path shows whose response
came back. Every child ends with ``os._exit`` and is killed after a generous limit, so no
test can hang; a killed child counts as a deadlock.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from anyio.from_thread import start_blocking_portal

from svcclient import (
    AsyncServiceClient,
    BulkheadPolicy,
    OutlierPolicy,
    ResilientTransport,
    ServiceClient,
)
from svcclient._observability import routes
from svcclient._transports import forksafe
from svcclient.testing._faultserver import Fault, FaultServer
from svcclient.testing._forking import (
    Result,
    aecho_ids,
    echo_ids,
    fork_child,
    reap_child,
    warm_pool,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

CHILD_LIMIT = 30.0  # seconds; a child normally needs well under one


def _peers(address: tuple[str, int]) -> int:
    """Open sockets of this process connected *to* ``address`` (client side)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):
            sock = socket.socket(fileno=os.dup(int(name)))
            try:
                count += sock.getpeername() == address
            finally:
                sock.close()
    return count


@pytest.fixture
def echo(fault_server: Callable[..., FaultServer]) -> FaultServer:
    return fault_server("127.0.0.1", name="echo")


@contextlib.contextmanager
def _sync_client(kind: str, url: str, **overrides: Any) -> Iterator[httpx.Client]:
    if kind == "ServiceClient":
        client: httpx.Client = ServiceClient("echo", url=url, hooks=[], **overrides)
    else:
        transport = ResilientTransport("echo", url=url, hooks=[], **overrides)
        client = httpx.Client(base_url=url, transport=transport)
    with client:
        yield client


KINDS = ["ServiceClient", "httpx.Client+ResilientTransport"]


@pytest.mark.parametrize("kind", KINDS)
def test_parent_and_child_each_get_their_own_responses(echo: FaultServer, kind: str) -> None:
    """200 requests in the parent and 200 in the child at once: no response crosses over."""
    with _sync_client(kind, echo.url) as client:
        warm_pool(client)
        pid, fd = fork_child(lambda: echo_ids(client, "child", 200))
        parent = echo_ids(client, "parent", 200)
        child = reap_child(pid, fd, time.monotonic() + CHILD_LIMIT)
    assert parent == {"crossed": 0, "errors": 0}
    assert child == {"crossed": 0, "errors": 0}
    assert echo.count() >= 400 + 20


@pytest.mark.parametrize(
    ("kind", "http2"), [(KINDS[0], False), (KINDS[1], False), (KINDS[0], True)]
)
def test_child_closes_its_copies_of_the_sockets_and_never_shuts_them_down(
    echo: FaultServer, kind: str, http2: bool
) -> None:
    """The child holds no pooled socket of the parent's; after it exits the parent's
    pooled connection still works (no shutdown, no new connection). ``http2``: a pool
    with HTTP/2 enabled (its streams are not capped, but registered all the same)."""
    address = ("127.0.0.1", echo.port)
    with _sync_client(kind, echo.url, http2=http2) as client:
        client.get("/warm")
        assert _peers(address) == 1
        pid, fd = fork_child(
            lambda: {"peers": _peers(address), "echo": echo_ids(client, "child", 5)}
        )
        child = reap_child(pid, fd, time.monotonic() + CHILD_LIMIT)
        accepted = echo.accepted
        parent = echo_ids(client, "parent", 20)
        assert echo.accepted == accepted  # the parent's connection survived the child
    assert child == {"peers": 0, "echo": {"crossed": 0, "errors": 0}}
    assert parent == {"crossed": 0, "errors": 0}


def test_forks_while_app_threads_are_mid_request_never_deadlock(echo: FaultServer) -> None:
    """20 forks while two app threads keep requests in flight (the server stalls before
    its headers): every child finishes its own request."""
    echo.set_fault(Fault.stall_before_headers(0.02))
    stop = threading.Event()
    with ServiceClient("echo", url=echo.url, hooks=[], timeout=5.0, deadline=10.0) as client:

        def app() -> None:
            i = 0
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"/app/{i}")
                i += 1

        threads = [threading.Thread(target=app) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            children = []
            for k in range(20):
                time.sleep(0.003 * (k % 7))  # fork at different points of the requests
                children.append(fork_child(lambda k=k: echo_ids(client, f"child{k}", 1)))
            give_up = time.monotonic() + CHILD_LIMIT
            results = [reap_child(pid, fd, give_up) for pid, fd in children]
        finally:
            stop.set()
            for t in threads:
                t.join(15)
    assert results == [{"crossed": 0, "errors": 0}] * 20


def test_locks_and_slots_held_by_a_parent_thread_do_not_block_the_child(
    echo: FaultServer,
) -> None:
    """A parent thread holding svcclient's locks and the only bulkhead slot at the moment
    of the fork: the child's request neither hangs nor is refused by the bulkhead."""
    bulkhead = BulkheadPolicy(max_concurrent=1, max_waiting=0)
    with ServiceClient("echo", url=echo.url, hooks=[], bulkhead=bulkhead) as client:
        client.get("/warm")
        resilient = client.resilient
        rt = resilient.runtime
        assert resilient.runtime.bulkhead is not None and rt.breaker is not None
        assert rt.budget is not None
        locks = [
            resilient._pools._lock,
            resilient.runtime.bulkhead._lock,
            rt.balancer._lock,
            rt.breaker._lock,
            rt.budget._lock,
            routes._tables_lock,  # a module-level one
        ]
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            assert resilient.runtime.bulkhead is not None
            resilient.runtime.bulkhead.acquire()  # the only slot
            for lock in locks:
                lock.acquire()
            held.set()
            release.wait(CHILD_LIMIT)
            for lock in reversed(locks):
                lock.release()
            resilient.runtime.bulkhead.release()

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            assert held.wait(10)
            pid, fd = fork_child(lambda: echo_ids(client, "child", 3))
            child = reap_child(pid, fd, time.monotonic() + CHILD_LIMIT)
        finally:
            release.set()
            thread.join(15)
        assert child == {"crossed": 0, "errors": 0}
        assert echo_ids(client, "parent", 3) == {"crossed": 0, "errors": 0}


@pytest.mark.parametrize("cookies", ["request", "response"])
def test_a_cookie_jar_lock_held_at_the_fork_does_not_block_the_child(
    echo: FaultServer, cookies: str
) -> None:
    """httpx's cookie jar (a stdlib CookieJar with its own lock) is used on every request
    and response; a parent thread holding its lock at the fork (as one extracting a
    response's cookies does) must not leave the child's ``ServiceClient`` stuck."""
    with ServiceClient("echo", url=echo.url, hooks=[]) as client:
        if cookies == "response":
            client.cookies.set("session", "abc")  # the child's request sends one too
        lock = client.cookies.jar._cookies_lock  # type: ignore[attr-defined]
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            with lock:
                held.set()
                release.wait(CHILD_LIMIT)

        thread = threading.Thread(target=holder)
        thread.start()
        try:
            assert held.wait(10)
            pid, fd = fork_child(lambda: echo_ids(client, "child", 2))
            child = reap_child(pid, fd, time.monotonic() + 10)
        finally:
            release.set()
            thread.join(15)
        assert child == {"crossed": 0, "errors": 0}


def test_the_childs_in_flight_gauge_does_not_count_the_parents_calls(
    echo: FaultServer,
) -> None:
    """A parent thread is mid-request at the fork: the parent's gauge shows it, the
    child's shows 0 (that call never ends in the child), before and after a request."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    labels = {"target_service": "echo"}

    def in_flight() -> float | None:
        return registry.get_sample_value("svcclient_requests_in_flight", labels)

    echo.set_fault(Fault.stall_before_headers(1.0))
    with ServiceClient("echo", url=echo.url, registry=registry, deadline=10.0) as client:
        thread = threading.Thread(target=client.get, args=("/slow",))
        thread.start()
        give_up = time.monotonic() + 10
        while in_flight() != 1.0 and time.monotonic() < give_up:
            time.sleep(0.005)
        try:
            assert in_flight() == 1.0
            echo.set_fault(Fault.ok())

            def child() -> Result:
                before = in_flight()
                echo_ids(client, "child", 1)
                return {"before": before, "after": in_flight()}

            pid, fd = fork_child(child)
            got = reap_child(pid, fd, time.monotonic() + CHILD_LIMIT)
        finally:
            thread.join(15)
    assert got == {"before": 0.0, "after": 0.0}


def test_health_checks_run_in_the_child(echo: FaultServer) -> None:
    """The parent's health-check thread is not copied by fork: the child restarts it."""
    outlier = OutlierPolicy(health_check_path="/healthz", health_check_interval=0.1)
    client = ServiceClient("echo", url=echo.url, hooks=[], outlier=outlier)
    client.get("/warm")

    def child() -> Result:
        client.get("/child")
        time.sleep(1.0)
        return {"alive": sum(t.name == "svcclient-health-echo" for t in threading.enumerate())}

    pid, fd = fork_child(child)
    client.close()  # stops the parent's checker: every probe from now on is the child's
    before = echo.count(path="/healthz")
    got = reap_child(pid, fd, time.monotonic() + CHILD_LIMIT)
    assert got == {"alive": 1}
    assert echo.count(path="/healthz") - before >= 2


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_client_in_the_child_runs_on_a_fresh_event_loop(
    echo: FaultServer, backend: str
) -> None:
    """The parent's client lives on an event loop in a thread; the child (which has no
    copy of that thread) uses the same client on a loop of its own, both at once."""
    client = AsyncServiceClient("echo", url=echo.url, hooks=[])

    async def warm() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(client.get, "/warm")

    with start_blocking_portal(backend) as portal:
        portal.call(warm)

        def child() -> Result:
            peers = _peers(("127.0.0.1", echo.port))  # the parent's are /dev/null here
            return {"peers": peers, **anyio.run(aecho_ids, client, "child", 200, backend=backend)}

        assert _peers(("127.0.0.1", echo.port)) >= 1  # pooled in the parent
        pid, fd = fork_child(child)
        parent = portal.call(aecho_ids, client, "parent", 200)
        got = reap_child(pid, fd, time.monotonic() + CHILD_LIMIT)
        portal.call(client.aclose)
    assert parent == {"crossed": 0, "errors": 0}
    assert got == {"peers": 0, "crossed": 0, "errors": 0}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_health_checks_run_in_the_child(echo: FaultServer, backend: str) -> None:
    """The async checker (woken by a thread, probing on the loop) restarts in the child,
    on the child's own event loop."""
    outlier = OutlierPolicy(health_check_path="/healthz", health_check_interval=0.1)
    client = AsyncServiceClient("echo", url=echo.url, hooks=[], outlier=outlier)

    async def child_run() -> Result:
        await client.get("/child")
        await anyio.sleep(1.0)
        alive = sum(t.name == "svcclient-health-echo" for t in threading.enumerate())
        return {"alive": alive}

    with start_blocking_portal(backend) as portal:
        portal.call(client.get, "/warm")
        pid, fd = fork_child(lambda: anyio.run(child_run, backend=backend))
        portal.call(client.aclose)  # every probe from now on is the child's
        before = echo.count(path="/healthz")
        got = reap_child(pid, fd, time.monotonic() + CHILD_LIMIT)
    assert got == {"alive": 1}
    assert echo.count(path="/healthz") - before >= 2


def test_the_fork_registry_does_not_keep_clients_alive(echo: FaultServer) -> None:
    """Clients register for the fork hook weakly: a dropped client is collected."""
    client = ServiceClient("echo", url=echo.url, hooks=[])
    client.get("/warm")
    ref = weakref.ref(client.resilient)
    assert ref() in forksafe._owners
    client.close()
    del client
    gc.collect()
    assert ref() is None
